//! The stable smoke runner's input generator: a small, deterministic byte mutator seeded from the
//! corpus and the dictionaries, so every run on every machine feeds the targets the same inputs. It
//! knows nothing of the targets; libFuzzer replaces all of this in real fuzzing.

/// A xorshift64* generator: tiny, fast and the same everywhere, which is all a smoke run needs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        // Truncation is the point: only the low bits are wanted, and `n` fits in usize.
        #[allow(clippy::cast_possible_truncation)]
        let r = self.next_u64() as usize;
        r % n
    }
}

/// Numbers and bytes that sit on the parsers' edges: lengths, limits, signs, separators.
const INTERESTING: &[&[u8]] = &[
    b"0",
    b"-1",
    b"-2",
    b"127",
    b"128",
    b"255",
    b"256",
    b"65535",
    b"65536",
    b"2147483647",
    b"4294967296",
    b"9223372036854775807",
    b"18446744073709551616",
    b"536870912",
    b"16777216",
    b"1e999",
    b"-0.0",
    b"NaN",
    b"\r\n",
    b"\n",
    b"\0",
    b"\xff",
    b"\xf0\x9f\x94\xa5",
    b"#",
    b".",
    b":",
    b"|",
    b"\"",
    b"\\u0000",
    b"\xe2\x86\x92",
];

/// One mutation of `input`: a byte changed, a token inserted, a span removed or repeated, or a
/// piece of another input spliced in.
pub fn mutate(rng: &mut Rng, input: &[u8], tokens: &[Vec<u8>], others: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(3) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                // Any byte value is the point of this mutation.
                #[allow(clippy::cast_possible_truncation)]
                let byte = rng.next_u64() as u8;
                out[i] = byte;
            }
            2 if !tokens.is_empty() => {
                let token = &tokens[rng.below(tokens.len())];
                out.splice(at..at, token.iter().copied());
            }
            3 => {
                let token = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(at..at, token.iter().copied());
            }
            4 if !out.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            5 if at < out.len() => {
                let end = (at + 1 + rng.below(32)).min(out.len());
                let span = out[at..end].to_vec();
                for _ in 0..=rng.below(4) {
                    out.splice(at..at, span.iter().copied());
                }
            }
            _ if !others.is_empty() => {
                let other = &others[rng.below(others.len())];
                let from = rng.below(other.len() + 1);
                let to = (from + rng.below(64)).min(other.len());
                out.splice(at..at, other[from..to].iter().copied());
            }
            _ => {}
        }
    }
    out.truncate(8192);
    out
}

/// The tokens of a libFuzzer dictionary (`name="value"` lines, `\xNN`, `\\` and `\"` escapes);
/// comments and lines it does not understand are skipped.
pub fn parse_dictionary(text: &str) -> Vec<Vec<u8>> {
    let mut tokens = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        let Some(start) = line.find('"') else { continue };
        let Some(body) = line[start + 1..].strip_suffix('"') else { continue };
        let mut token = Vec::new();
        let mut bytes = body.bytes();
        while let Some(b) = bytes.next() {
            if b != b'\\' {
                token.push(b);
                continue;
            }
            match bytes.next() {
                Some(b'x') => {
                    let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                    if let Some(value) = std::str::from_utf8(&hex).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        token.push(value);
                    }
                }
                Some(other) => token.push(other),
                None => {}
            }
        }
        tokens.push(token);
    }
    tokens
}
