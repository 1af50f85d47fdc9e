//! Compute backends: burn's Flex CPU backend by default, CUDA behind the `cuda` feature.

use serde::{Deserialize, Serialize};

/// The CPU backend (burn-flex: pure Rust, SIMD, rayon).
pub type Cpu = burn::backend::Flex;
/// The CPU backend with reverse-mode autodiff.
pub type CpuAutodiff = burn::backend::Autodiff<Cpu>;

/// The CUDA backend.
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda;
/// The CUDA backend with reverse-mode autodiff.
#[cfg(feature = "cuda")]
pub type CudaAutodiff = burn::backend::Autodiff<Cuda>;

/// Where to compute, as chosen with `--device`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// The CPU (burn-flex), the default.
    #[default]
    Cpu,
    /// The first NVIDIA GPU (needs a build with `--features cuda`); results match the CPU's. The
    /// first run of a job on a machine compiles its GPU kernels and tunes them (2 minutes or more
    /// for a small zoo on an H200); they are kept in `$NMFLOW_CUDA_CACHE` (default
    /// `~/.cache/nmflow/cuda`; `off` keeps nothing), so that the same job's next run skips that
    /// (BENCHMARKS.md, "Where the CUDA time went").
    Cuda,
}

/// A job that runs on any autodiff backend: the one thing a command does once `--device` has
/// chosen the backend (see [`dispatch`]).
pub trait BackendJob {
    /// What the job returns.
    type Output;
    /// Runs the job on backend `B` and its `device`.
    ///
    /// # Errors
    /// Whatever the job fails with.
    fn run<B: burn::tensor::backend::AutodiffBackend>(
        self,
        device: &B::Device,
    ) -> anyhow::Result<Self::Output>;
}

/// Runs `job` on the backend `kind` names: the CPU, or the first CUDA GPU. The same generic code
/// runs on both.
///
/// # Errors
/// A [`crate::error::UsageError`] for `cuda` in a build without the `cuda` feature, a failure
/// when no CUDA driver is found, and whatever the job fails with.
pub fn dispatch<J: BackendJob>(kind: DeviceKind, job: J) -> anyhow::Result<J::Output> {
    match kind {
        DeviceKind::Cpu => job.run::<CpuAutodiff>(&Default::default()),
        DeviceKind::Cuda => on_cuda(job),
    }
}

#[cfg(feature = "cuda")]
fn on_cuda<J: BackendJob>(job: J) -> anyhow::Result<J::Output> {
    if !cuda_driver_present() {
        anyhow::bail!("--device cuda: no CUDA driver (libcuda.so.1) found on this machine");
    }
    static CACHES: std::sync::Once = std::sync::Once::new();
    CACHES.call_once(keep_cuda_kernels);
    job.run::<CudaAutodiff>(&burn::backend::cuda::CudaDevice::new(0))
}

/// Points cubecl's compiled-kernel (PTX) and autotuning caches at [`cuda_cache_dir`], unless a
/// `cubecl.toml` (or `burn.toml`) already chooses a kernel cache. Without it, every run compiles
/// each kernel again through NVRTC on one CPU thread: about 200 kernels, two minutes, for a small
/// zoo on an H200, against 2 s for the same job with the cache warm.
#[cfg(feature = "cuda")]
fn keep_cuda_kernels() {
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig, cache::CacheConfig};
    let Some(dir) = cuda_cache_dir(|k| std::env::var_os(k)) else {
        return;
    };
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    if config.compilation.cache.is_none() {
        config.compilation.cache = Some(CacheConfig::File(dir.clone()));
        config.autotune.cache = CacheConfig::File(dir);
    }
    CubeClRuntimeConfig::set(config);
}

/// Where `--device cuda` keeps compiled GPU kernels and autotuning results between runs:
/// `$NMFLOW_CUDA_CACHE` (empty or `off`: nowhere), else `$XDG_CACHE_HOME/nmflow/cuda`, else
/// `$HOME/.cache/nmflow/cuda`. `var` reads an environment variable.
pub fn cuda_cache_dir(
    var: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Option<std::path::PathBuf> {
    let set = |k: &str| var(k).filter(|v| !v.is_empty());
    if let Some(dir) = var("NMFLOW_CUDA_CACHE") {
        return (!dir.is_empty() && dir != "off").then(|| dir.into());
    }
    if let Some(xdg) = set("XDG_CACHE_HOME") {
        return Some(std::path::PathBuf::from(xdg).join("nmflow").join("cuda"));
    }
    set("HOME").map(|h| {
        std::path::PathBuf::from(h)
            .join(".cache")
            .join("nmflow")
            .join("cuda")
    })
}

#[cfg(not(feature = "cuda"))]
fn on_cuda<J: BackendJob>(_job: J) -> anyhow::Result<J::Output> {
    Err(crate::error::UsageError(
        "--device cuda: this nmflow was built without the `cuda` feature (cargo build --release --features cuda)"
            .into(),
    )
    .into())
}

/// A tensor's values could not be read back from the backend as the element type asked for.
#[derive(Debug, thiserror::Error)]
#[error("reading a tensor's values back from the compute backend failed: {0}")]
pub struct TensorRead(pub String);

/// A tensor's values as `E` (converted from the backend's element type), or an error: never a
/// silently empty vector.
///
/// # Errors
/// [`TensorRead`] when the backend's data cannot be read as `E`.
pub fn values<E: burn::tensor::Element>(
    data: burn::tensor::TensorData,
) -> Result<Vec<E>, TensorRead> {
    data.convert::<E>()
        .to_vec::<E>()
        .map_err(|e| TensorRead(format!("{e:?}")))
}

/// Whether a CUDA driver library can be found, so that `--device cuda` fails with a clear message
/// instead of a panic inside the backend.
pub fn cuda_driver_present() -> bool {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(
        [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib64",
            "/usr/lib",
            "/usr/local/cuda/lib64",
            "/usr/local/nvidia/lib64",
            "/usr/lib/wsl/lib",
        ]
        .map(std::path::PathBuf::from),
    );
    dirs.iter()
        .any(|d| d.join("libcuda.so.1").exists() || d.join("libcuda.so").exists())
}

/// Held by every test that seeds burn's global generator, from the seed to its last draw: tests
/// run in parallel threads, and one test's seed would otherwise reach another's initialization.
#[cfg(test)]
pub(crate) fn seed_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::cuda_cache_dir;
    use std::ffi::OsString;
    use std::path::PathBuf;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_cuda_cache_follows_the_variable_then_xdg_then_home() {
        let home = [("HOME", "/h")];
        assert_eq!(
            cuda_cache_dir(env(&home)),
            Some(PathBuf::from("/h/.cache/nmflow/cuda"))
        );
        let xdg = [("HOME", "/h"), ("XDG_CACHE_HOME", "/x")];
        assert_eq!(
            cuda_cache_dir(env(&xdg)),
            Some(PathBuf::from("/x/nmflow/cuda"))
        );
        let own = [("HOME", "/h"), ("NMFLOW_CUDA_CACHE", "/k")];
        assert_eq!(cuda_cache_dir(env(&own)), Some(PathBuf::from("/k")));
        for off in ["off", ""] {
            let none = [("HOME", "/h"), ("NMFLOW_CUDA_CACHE", off)];
            assert_eq!(cuda_cache_dir(env(&none)), None);
        }
        let empty_xdg = [("HOME", "/h"), ("XDG_CACHE_HOME", "")];
        assert_eq!(
            cuda_cache_dir(env(&empty_xdg)),
            Some(PathBuf::from("/h/.cache/nmflow/cuda"))
        );
        assert_eq!(cuda_cache_dir(env(&[])), None);
    }
}
