//! Picking up changes in `--cert-dir` without a restart.
//!
//! For: a background task that lists the directory every `--cert-reload-interval` and, when a
//! file was added, removed or changed (size, modification time or inode), reloads the whole
//! directory and swaps the resolver's table. Polling rather than file-system notifications: it
//! sees every way a file gets replaced (an editor's rewrite, `mv`, a Kubernetes secret's
//! symbolic-link swap, a network file system) at the cost of a directory listing per interval.
//! A file caught half-written is reported, and loaded at the next interval once it is complete.
//! Not for: parsing files (see `store`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use super::resolve::CertResolver;
use super::store::{self, Listing};

/// Rescans `dir` forever (the task ends with the runtime).
pub(super) async fn run(dir: PathBuf, interval: Duration, mut listing: Listing, resolver: Arc<CertResolver>) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut unreadable = false;
    loop {
        ticker.tick().await;
        let scan_dir = dir.clone();
        let previous = listing.clone();
        // Directory listings and file reads block: off the runtime's workers.
        let result = tokio::task::spawn_blocking(move || {
            let now = store::scan(&scan_dir)?;
            if now == previous {
                return Ok(None);
            }
            tracing::info!(dir = %scan_dir.display(), "--cert-dir changed; reloading the certificates");
            std::io::Result::Ok(Some(store::load(&scan_dir)?))
        })
        .await;
        match result {
            Ok(Ok(None)) => unreadable = false,
            Ok(Ok(Some((table, now)))) => {
                unreadable = false;
                resolver.replace(table);
                listing = now;
            }
            Ok(Err(error)) => {
                if !unreadable {
                    tracing::warn!(
                        dir = %dir.display(),
                        %error,
                        "cannot read --cert-dir; still serving the certificates loaded before"
                    );
                }
                unreadable = true;
            }
            Err(error) => tracing::warn!(%error, "the --cert-dir scan did not finish"),
        }
    }
}
