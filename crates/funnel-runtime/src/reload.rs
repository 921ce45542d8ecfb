//! Files a service reloads without restart (rules, policies): a poll that notices when
//! one changed.
//!
//! The stamp a watcher starts from must be taken *before* the file is first loaded. Taken
//! after, an edit made between the load and the first poll is part of the starting stamp,
//! and the watcher never sees it: the service keeps serving the old file.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::Shutdown;

/// A file's length and modification time, or nothing when it cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp(Option<(u64, Option<SystemTime>)>);

impl FileStamp {
    pub fn of(path: &Path) -> FileStamp {
        FileStamp(
            std::fs::metadata(path)
                .ok()
                .map(|meta| (meta.len(), meta.modified().ok())),
        )
    }
}

/// Polls `path` every `every` until `stop`, and calls `changed` each time its stamp
/// differs from the one before; `loaded` is the stamp taken before the file was loaded.
pub async fn on_change(
    path: &Path,
    loaded: FileStamp,
    every: Duration,
    stop: &Shutdown,
    mut changed: impl FnMut(),
) {
    let mut seen = loaded;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = FileStamp::of(path);
        if now != seen {
            seen = now;
            changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<()>) -> Option<()> {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .ok()?
    }

    #[tokio::test]
    async fn an_edit_made_before_the_first_poll_is_seen() {
        const EVERY: Duration = Duration::from_millis(10);
        let path = std::env::temp_dir().join(format!("funnel-reload-{}", std::process::id()));
        std::fs::write(&path, "a").unwrap();
        let loaded = FileStamp::of(&path);
        // Edited after the load, before the watcher ran: a longer file, so that the stamp
        // differs whatever the file system's clock resolution.
        std::fs::write(&path, "ab").unwrap();
        let stop = Shutdown::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let watcher = tokio::spawn({
            let (path, stop) = (path.clone(), stop.clone());
            async move { on_change(&path, loaded, EVERY, &stop, || tx.send(()).unwrap()).await }
        });
        assert_eq!(next(&mut rx).await, Some(()));
        tokio::time::sleep(EVERY * 10).await;
        assert!(
            rx.try_recv().is_err(),
            "an unchanged file is not reported again"
        );
        std::fs::write(&path, "abc").unwrap();
        assert_eq!(next(&mut rx).await, Some(()));
        stop.trigger();
        watcher.await.unwrap();
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_missing_file_has_a_stamp_of_its_own() {
        let missing = std::env::temp_dir().join("funnel-reload-never-written");
        assert_eq!(FileStamp::of(&missing), FileStamp(None));
    }
}
