//! QEMU mps2-an386 (Cortex-M4F): synthesize an MNIST `mlp:784-10-10` classifier from the embedded
//! nmflow model (int8 set field), classify 200 MNIST test images stored in flash, report through
//! defmt (semihosting), and exit with status 0 on success.
#![cfg_attr(target_os = "none", no_std, no_main)]

// The firmware is bare-metal only; on the host this binary is empty (the library's tests run there).
#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod firmware {
    use cortex_m_rt::entry;
    use nmflow_fw_app::{MnistWorkspace, assets};
    use nmflow_fw_qemu::board;

    static mut WORKSPACE: MnistWorkspace = MnistWorkspace::new();

    #[entry]
    fn main() -> ! {
        // SAFETY: the only reference to the workspace, taken once in main.
        let ws = unsafe { &mut *core::ptr::addr_of_mut!(WORKSPACE) };
        board::run_mnist_and_exit(assets::MNIST_MODEL, ws, |r| r.log())
    }
}
