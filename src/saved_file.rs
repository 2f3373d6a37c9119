//! A table of the state kept saved in a file: the routing file's and the scenes file's shared part.
//!
//! An observer hands the table to a writer task through a `watch` whenever a change touches it (a
//! burst of changes costs one write of the latest table), and the task writes it atomically
//! (temporary file, flushed, then renamed) so a crash mid-write never leaves half a file. Knows no
//! table's format: each file says which changes touch its table, how to take it from the state and
//! how to render it. Knows nothing of chat, Redis or OSC.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::coord::CoordHandle;
use crate::observe::Observer;
use crate::state::{Change, Event, State};
use crate::stats::{CounterSet, Stats};

/// Writes `text` to `path` atomically: a temporary file beside it, flushed to disk, then renamed.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map_or_else(|| "saved".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What a file keeps: its name in logs and counters, which changes touch it, the table as the
/// state holds it, and the file's text for a table.
pub struct Table<T> {
    /// `routing` or `scenes`: the counters are `{name}_saves` and `{name}_save_failures`.
    pub name: &'static str,
    pub touches: fn(&Change) -> bool,
    pub of: fn(&State) -> T,
    pub render: Box<dyn Fn(&T) -> String + Send + Sync>,
}

impl<T> std::fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A file's saves and failed saves, registered with [`Stats`].
#[derive(Debug)]
pub struct SaveCounters {
    names: [String; 2],
    pub saves: AtomicU64,
    pub save_failures: AtomicU64,
}

impl CounterSet for SaveCounters {
    fn report(&self, out: &mut dyn FnMut(&str, u64)) {
        out(&self.names[0], self.saves.load(Ordering::Relaxed));
        out(&self.names[1], self.save_failures.load(Ordering::Relaxed));
    }
}

/// The observer: the table, each time a change touches it.
struct Follow<T> {
    tx: watch::Sender<Arc<T>>,
    touches: fn(&Change) -> bool,
    of: fn(&State) -> T,
}

impl<T> std::fmt::Debug for Follow<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Follow")
    }
}

impl<T: Send + Sync + 'static> Observer for Follow<T> {
    fn on_change(&mut self, _event: &Event, change: &Change, state: &State) {
        if (self.touches)(change) {
            self.tx.send_replace(Arc::new((self.of)(state)));
        }
    }
}

/// Follows `table`'s changes and rewrites `path` after each (the latest table, when several came
/// while a write was under way). A failed write is logged and counted; the table stays live in
/// memory. Observes when called, not when first polled: changes applied before the task first runs
/// are not lost to it. Ends when the coordinator shuts down.
pub fn keep_saved<T: Send + Sync + 'static>(
    path: PathBuf,
    table: Table<T>,
    coord: &CoordHandle,
    stats: &Stats,
    shutdown: CancellationToken,
) -> impl Future<Output = anyhow::Result<()>> + Send + use<T> {
    let counters = Arc::new(SaveCounters {
        names: [format!("{}_saves", table.name), format!("{}_save_failures", table.name)],
        saves: AtomicU64::new(0),
        save_failures: AtomicU64::new(0),
    });
    stats.register(counters.clone());
    let mut watched = None;
    let (touches, of) = (table.touches, table.of);
    let observing = coord.observe(|state| {
        let initial = Arc::new(of(state));
        let (tx, rx) = watch::channel(initial.clone());
        watched = Some((rx, initial));
        Box::new(Follow { tx, touches, of })
    });
    follow(path, table, counters, shutdown, watched.filter(|_| observing))
}

async fn follow<T: Send + Sync + 'static>(
    path: PathBuf,
    table: Table<T>,
    counters: Arc<SaveCounters>,
    shutdown: CancellationToken,
    watched: Option<(watch::Receiver<Arc<T>>, Arc<T>)>,
) -> anyhow::Result<()> {
    // `saved` starts as the table when the observer was made, which the file already holds. Changes
    // made before this task first runs are unseen by `watched`, so the first `changed` returns at once.
    let Some((mut watched, mut saved)) = watched else { return Ok(()) };
    loop {
        let stopping = tokio::select! {
            () = shutdown.cancelled() => true,
            changed = watched.changed() => changed.is_err(),
        };
        let latest = watched.borrow_and_update().clone();
        if stopping {
            // A change that came in while the last write was under way is not lost to a shutdown.
            if !Arc::ptr_eq(&latest, &saved) {
                save(&path, &table, &latest, &counters).await?;
            }
            return Ok(());
        }
        save(&path, &table, &latest, &counters).await?;
        saved = latest;
    }
}

/// Writes `latest` to `path`, counting the outcome. Only a writer that cannot run is an error.
async fn save<T>(path: &Path, table: &Table<T>, latest: &T, counters: &SaveCounters) -> anyhow::Result<()> {
    let text = (table.render)(latest);
    let target = path.to_path_buf();
    let name = table.name;
    match tokio::task::spawn_blocking(move || write_atomic(&target, &text)).await {
        Ok(Ok(())) => {
            counters.saves.fetch_add(1, Ordering::Relaxed);
            info!(path = %path.display(), file = name, "saved");
            Ok(())
        }
        Ok(Err(e)) => {
            counters.save_failures.fetch_add(1, Ordering::Relaxed);
            warn!(path = %path.display(), file = name, error = %e, "could not save; the table stays live in memory");
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("{name} file writer failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("table.json");
        write_atomic(&path, "{\"a\": 1}\n").expect("first write");
        write_atomic(&path, "{\"b\": 2}\n").expect("second write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "{\"b\": 2}\n");
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).expect("dir").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("table.json")], "no temporary left behind");
    }
}
