//! Choosing a backend: the best one compiled in, or the one `AI_OS_KERNEL_BACKEND` names.

use std::sync::Arc;

use super::Backend;
use crate::syscalls::iouring::error::IoUringError;

/// The environment variable that forces a backend: `uring`, `tokio`, `smol` or `blocking`.
pub const BACKEND_ENV: &str = "AI_OS_KERNEL_BACKEND";

/// The backends compiled into this build, best first.
pub fn available() -> &'static [&'static str] {
    &[
        #[cfg(all(feature = "uring", target_os = "linux"))]
        "uring",
        #[cfg(feature = "tokio")]
        "tokio",
        #[cfg(feature = "smol")]
        "smol",
        #[cfg(feature = "blocking")]
        "blocking",
    ]
}

/// The backend named by `AI_OS_KERNEL_BACKEND`, or else the best one compiled in.
///
/// A name that is unknown or not compiled in is an error naming the choices, never a silent
/// fallback.
pub fn from_env() -> Result<Arc<dyn Backend>, IoUringError> {
    match std::env::var(BACKEND_ENV) {
        Ok(name) if !name.trim().is_empty() => {
            let backend = by_name(name.trim())?;
            tracing::info!(backend = backend.name(), "backend forced by {BACKEND_ENV}");
            Ok(backend)
        }
        _ => {
            for name in available() {
                match by_name(name) {
                    Ok(backend) => {
                        tracing::info!(backend = backend.name(), "backend chosen");
                        return Ok(backend);
                    }
                    Err(e) => tracing::info!(backend = name, reason = %e, "backend unavailable, trying the next"),
                }
            }
            Err(IoUringError::InvalidConfig(format!(
                "no backend is compiled in; enable one of the features uring, tokio, smol, blocking (compiled in: {:?})",
                available()
            )))
        }
    }
}

/// The backend called `name`, if compiled in and usable here.
pub fn by_name(name: &str) -> Result<Arc<dyn Backend>, IoUringError> {
    match name {
        #[cfg(feature = "blocking")]
        "blocking" => Ok(Arc::new(super::BlockingBackend::new())),
        #[cfg(all(feature = "uring", target_os = "linux"))]
        "uring" => super::UringBackend::new()
            .map(|b| Arc::new(b) as Arc<dyn Backend>)
            .map_err(|e| IoUringError::Backend(format!("io_uring is unavailable here: {e}"))),
        #[cfg(feature = "tokio")]
        "tokio" => super::TokioBackend::new()
            .map(|b| Arc::new(b) as Arc<dyn Backend>)
            .map_err(|e| IoUringError::Backend(format!("cannot start a tokio runtime: {e}"))),
        #[cfg(feature = "smol")]
        "smol" => Ok(Arc::new(super::SmolBackend::new())),
        _ => Err(IoUringError::InvalidConfig(format!(
            "backend {name:?} is not compiled into this build; choose one of {:?} (known: uring, tokio, smol, blocking)",
            available()
        ))),
    }
}
