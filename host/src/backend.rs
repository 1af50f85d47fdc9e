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
    /// The first NVIDIA GPU (needs a build with `--features cuda`). Its results match the CPU's,
    /// but on an H200 a zoo trained 25× slower than the same code on 2 CPU cores, and a 5-step
    /// meta-model training did not finish in 40 s (BENCHMARKS.md, "CUDA on an H200"): prefer the
    /// CPU for now.
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
    job.run::<CudaAutodiff>(&burn::backend::cuda::CudaDevice::new(0))
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
