//! Choosing a backend: the best one compiled in, or the one `AI_OS_KERNEL_BACKEND` names.

use std::sync::Arc;

use super::Backend;
use crate::op::IoUringError;

/// The environment variable that forces a backend: `uring`, `tokio`, `smol` or `blocking`.
pub const BACKEND_ENV: &str = "AI_OS_KERNEL_BACKEND";

/// The backends compiled into this build, fastest first: the order in which the manager tries
/// them. io_uring first; where it is unavailable, the blocking pool, then smol, then tokio: on
/// the anchors bench their throughputs are within the machine's noise of each other, and the
/// blocking pool needs no runtime and has the steadiest latency (BENCHMARKS.md).
pub fn available() -> &'static [&'static str] {
    &[
        #[cfg(all(feature = "uring", target_os = "linux"))]
        "uring",
        #[cfg(feature = "blocking")]
        "blocking",
        #[cfg(feature = "smol")]
        "smol",
        #[cfg(feature = "tokio")]
        "tokio",
    ]
}

/// A backend chosen for the manager, and why it was.
pub struct Choice {
    /// The backend.
    pub backend: Arc<dyn Backend>,
    /// Why this one: forced by [`BACKEND_ENV`], or the first usable in the order of
    /// [`available`], with the reason each one before it was skipped.
    pub why: String,
}

impl std::fmt::Debug for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Choice").field("backend", &self.backend.name()).field("why", &self.why).finish()
    }
}

/// The backend named by `AI_OS_KERNEL_BACKEND`, or else the best one compiled in.
///
/// A name that is unknown or not compiled in is an error naming the choices, never a silent
/// fallback.
pub fn from_env() -> Result<Arc<dyn Backend>, IoUringError> {
    choose().map(|choice| choice.backend)
}

/// [`from_env`], saying why: what `probe` prints and the manager logs.
pub fn choose() -> Result<Choice, IoUringError> {
    match std::env::var(BACKEND_ENV) {
        Ok(name) if !name.trim().is_empty() => {
            let backend = by_name(name.trim())?;
            let why = format!("forced by {BACKEND_ENV}={}", name.trim());
            tracing::info!(backend = backend.name(), "backend {why}");
            Ok(Choice { backend, why })
        }
        _ => {
            let mut skipped = Vec::new();
            for name in available() {
                match by_name(name) {
                    Ok(backend) => {
                        let mut why = format!("the fastest usable of those compiled in {:?}", available());
                        if !skipped.is_empty() {
                            why += &format!("; skipped: {}", skipped.join("; "));
                        }
                        tracing::info!(backend = backend.name(), "backend chosen: {why}");
                        return Ok(Choice { backend, why });
                    }
                    Err(e) => {
                        tracing::info!(backend = name, reason = %e, "backend unavailable, trying the next");
                        skipped.push(format!("{name} ({e})"));
                    }
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
