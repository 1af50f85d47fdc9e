//! QEMU mps2-an386 (Cortex-M4F): adapt to a task the model never saw, a permutation of the
//! MNIST-8×8 labels. A sensor delivers 50 labeled frames (5 per class, in flash); the embedded
//! class-conditioned model (int8) synthesizes 5 classifiers for the task and one without it (the
//! null condition); each classifies 1,000 frames under the task's labels. Reports through defmt
//! (semihosting) and exits with status 0 on success.
#![cfg_attr(target_os = "none", no_std, no_main)]

// The firmware is bare-metal only; on the host this binary is empty (the library's tests run there).
#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod firmware {
    use cortex_m_rt::entry;
    use nmflow_fw_app::{AdaptWorkspace, adapt_sensors, assets, run_adapt_demo};
    use nmflow_fw_qemu::board;

    static mut WORKSPACE: AdaptWorkspace = AdaptWorkspace::new();

    #[entry]
    fn main() -> ! {
        board::begin(assets::PERM_MODEL.len(), AdaptWorkspace::bytes());
        // SAFETY: the only reference to the workspace, taken once in main.
        let ws = unsafe { &mut *core::ptr::addr_of_mut!(WORKSPACE) };
        let (mut support, mut test) = adapt_sensors();
        // The first synthesis also encodes the support set: time it alone.
        let start = board::now();
        let mut ticks_per_synthesis = 0u32;
        let mut on_synthesis = |k: u64| {
            if k == 0 {
                ticks_per_synthesis = board::ticks(start, board::now());
            }
        };
        let r = run_adapt_demo(&mut support, &mut test, ws, &mut on_synthesis);
        board::finish(r, |r| {
            r.log();
            board::log_resources(ticks_per_synthesis);
        })
    }
}
