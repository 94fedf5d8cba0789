//! Waiting for the signals that ask a Berth daemon to stop.

/// Completes on SIGTERM or SIGINT (Ctrl-C). If SIGTERM cannot be watched, only SIGINT is.
pub async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
