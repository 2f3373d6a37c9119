//! The nearest catalogue name to a misspelt one: an edit distance (Damerau-Levenshtein, adjacent
//! swaps counted as one edit) ignoring ASCII case, and a name is offered only when it is close.
//!
//! Pure: no I/O, no state. Knows the catalogue's names, nothing of chat or who asked.

use std::sync::Arc;

use super::Catalog;

/// Longer text than this is no misspelt name (the catalogue's are a few letters), so it is not
/// compared at all: a flood of long junk costs nothing.
const MAX_COMPARED_CHARS: usize = 40;

/// The edit distance between `a` and `b` ignoring ASCII case: insertions, deletions, substitutions
/// and swaps of two neighbouring characters each count one (the optimal string alignment form).
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    // Three rows are enough: a swap looks two rows back.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1).min(current[j - 1] + 1).min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// How many edits a name of `chars` characters may be away and still be offered: about one in
/// three, at least one. Further than that, a suggestion is a guess that teaches nothing.
pub fn tolerance(chars: usize) -> usize {
    (chars / 3).max(1)
}

/// The candidate nearest to `written`, if any is within [`tolerance`]; the first of equals in
/// `candidates`' order. Only printable ASCII is compared, because only that is echoed back to chat.
pub fn nearest<'a>(written: &str, candidates: impl IntoIterator<Item = &'a Arc<str>>) -> Option<&'a Arc<str>> {
    let chars = written.chars().count();
    if chars == 0 || chars > MAX_COMPARED_CHARS || !written.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let limit = tolerance(chars);
    let mut best: Option<(usize, &Arc<str>)> = None;
    for candidate in candidates {
        // No alignment of two texts is shorter than the difference of their lengths.
        if candidate.chars().count().abs_diff(chars) > limit {
            continue;
        }
        let d = distance(written, candidate);
        if d <= limit && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, name)| name)
}

impl Catalog {
    /// The module name nearest to `written`, when one is close.
    pub fn nearest_module(&self, written: &str) -> Option<Arc<str>> {
        let mut names: Vec<&Arc<str>> = self.modules.values().map(|m| &m.name).collect();
        names.sort();
        nearest(written, names).cloned()
    }

    /// The parameter of `module` nearest to `written`, when one is close (`None` for an unknown module).
    pub fn nearest_parameter(&self, module: &str, written: &str) -> Option<Arc<str>> {
        nearest(written, &self.module_entry(module)?.parameters).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CatalogSource;

    fn check(a: &str, b: &str, expected: usize) {
        assert_eq!(distance(a, b), expected, "{a:?} to {b:?}");
        assert_eq!(distance(b, a), expected, "{b:?} to {a:?}");
    }

    #[test]
    fn distances_count_inserts_deletes_substitutions_and_swaps_ignoring_case() {
        let cases = [
            ("threshold", "threshold", 0),
            ("THRESHOLD", "threshold", 0),
            ("threshhold", "threshold", 1),
            ("doorwy", "doorway", 1),
            ("doorawy", "doorway", 1),
            ("thresold", "threshold", 1),
            ("gian", "gain", 1),
            ("kitten", "sitting", 3),
            ("", "gain", 4),
            ("", "", 0),
            ("abc", "ca", 3),
            ("opacitya", "opacityA", 0),
            ("ñandu", "nandu", 1),
        ];
        for (a, b, expected) in cases {
            check(a, b, expected);
        }
    }

    #[test]
    fn a_name_is_offered_only_when_it_is_close() {
        let c = Catalog::builtin();
        let cases = [
            ("doorwy", Some("doorway")),
            ("DOORWAY", Some("doorway")),
            ("navigater", Some("navigator")),
            ("prismatic", Some("prismaticray")),
            ("zzzzzzzzz", None),
            ("lol", None),
            ("", None),
            ("doorwaydoorwaydoorwaydoorwaydoorwaydoorwaydoorway", None),
            ("d\u{f6}orway", None),
            ("door way", None),
        ];
        for (written, expected) in cases {
            assert_eq!(c.nearest_module(written).as_deref(), expected, "module {written:?}");
        }
        let cases = [
            ("doorway", "threshhold", Some("threshold")),
            ("doorway", "gian", Some("gain")),
            ("doorway", "Thresold", Some("threshold")),
            ("doorway", "volume", None),
            ("marbleindex", "opacityC", Some("opacityA")),
            ("passage", "thru#4", Some("thru#1")),
            ("arch", "gain", None),
            ("nosuchmodule", "gain", None),
        ];
        for (module, written, expected) in cases {
            assert_eq!(c.nearest_parameter(module, written).as_deref(), expected, "{module}.{written}");
        }
    }

    #[test]
    fn ties_go_to_the_first_name_in_catalogue_order() {
        let text = r#"{"format": 1, "modules": [{"name": "m", "parameters": ["gainB", "gainA"]}], "outputs": []}"#;
        let c = Catalog::parse(text, CatalogSource::Embedded).expect("valid");
        assert_eq!(c.nearest_parameter("m", "gainC").as_deref(), Some("gainB"));
        assert_eq!(tolerance(1), 1);
        assert_eq!(tolerance(9), 3);
    }
}
