//! QEMU mps2-an386 (Cortex-M4F): synthesize a classifier from the embedded nmflow model, classify
//! 300 MNIST-8×8 frames, measure ensemble disagreement on MNIST-8×8 and optdigits windows, report
//! through defmt (semihosting), and exit with status 0 on success.
#![cfg_attr(target_os = "none", no_std, no_main)]

// The firmware is bare-metal only; on the host this binary is empty (the library's tests run there).
#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod firmware {
    use cortex_m_rt::entry;
    use nmflow_fw_app::{AppWorkspace, assets, embedded_sensors, run_demo};
    use nmflow_fw_qemu::board;

    static mut WORKSPACE: AppWorkspace = AppWorkspace::new();

    #[entry]
    fn main() -> ! {
        board::begin(assets::MODEL.len(), AppWorkspace::bytes());
        // SAFETY: the only reference to the workspace, taken once in main.
        let ws = unsafe { &mut *core::ptr::addr_of_mut!(WORKSPACE) };
        let (mut test, mut shifted) = embedded_sensors();
        let mut last = board::now();
        let mut ticks_per_synthesis = 0u32;
        let mut first = true;
        let mut on_synthesis = |_seed: u64| {
            let now = board::now();
            if first {
                ticks_per_synthesis = board::ticks(last, now);
                first = false;
            }
            last = now;
        };
        let r = run_demo(&mut test, &mut shifted, ws, &mut on_synthesis);
        board::finish(r, |r| {
            r.log();
            board::log_resources(ticks_per_synthesis);
        })
    }
}
