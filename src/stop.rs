//! The operator's request to stop everything, as the platform sends it: SIGINT, SIGTERM or
//! SIGHUP on Unix; Ctrl+C, Ctrl+Break, closing the console, logoff or shutdown on Windows.

/// Listens for stop requests from the moment it is created.
pub struct StopSignals {
    #[cfg(unix)]
    sigs: [tokio::signal::unix::Signal; 3],
    #[cfg(windows)]
    ctrl_c: tokio::signal::windows::CtrlC,
    #[cfg(windows)]
    ctrl_break: tokio::signal::windows::CtrlBreak,
    #[cfg(windows)]
    close: Option<tokio::signal::windows::CtrlClose>,
    #[cfg(windows)]
    shutdown: Option<tokio::signal::windows::CtrlShutdown>,
    #[cfg(windows)]
    logoff: Option<tokio::signal::windows::CtrlLogoff>,
}

impl StopSignals {
    /// Must be called inside a tokio runtime.
    pub fn new() -> std::io::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(StopSignals {
                sigs: [
                    signal(SignalKind::interrupt())?,
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::hangup())?,
                ],
            })
        }
        #[cfg(windows)]
        {
            use tokio::signal::windows as w;
            Ok(StopSignals {
                ctrl_c: w::ctrl_c()?,
                ctrl_break: w::ctrl_break()?,
                close: w::ctrl_close().ok(),
                shutdown: w::ctrl_shutdown().ok(),
                logoff: w::ctrl_logoff().ok(),
            })
        }
    }

    /// Waits for the next stop request.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            let [a, b, c] = &mut self.sigs;
            tokio::select! {
                _ = a.recv() => {}
                _ = b.recv() => {}
                _ = c.recv() => {}
            }
        }
        #[cfg(windows)]
        {
            async fn opt<T>(f: Option<impl std::future::Future<Output = T>>) {
                match f {
                    Some(f) => {
                        f.await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = self.ctrl_c.recv() => {}
                _ = self.ctrl_break.recv() => {}
                _ = opt(self.close.as_mut().map(|c| c.recv())) => {}
                _ = opt(self.shutdown.as_mut().map(|c| c.recv())) => {}
                _ = opt(self.logoff.as_mut().map(|c| c.recv())) => {}
            }
        }
    }
}
