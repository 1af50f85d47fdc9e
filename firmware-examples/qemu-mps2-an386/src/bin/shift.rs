//! QEMU mps2-an386 (Cortex-M4F): decide, with the embedded model's calibrated shift section
//! (meta-detectron: members tilted towards disagreement on the window by reward guidance), on 50
//! windows of 20 MNIST-8×8 frames and 50 of optdigits frames; report the false-alarm and detection
//! counts and the instructions per decision through defmt (semihosting), and exit with status 0.
#![cfg_attr(target_os = "none", no_std, no_main)]

// The firmware is bare-metal only; on the host this binary is empty (the library's tests run there).
#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod firmware {
    use cortex_m_rt::entry;
    use nmflow_fw_app::{
        SHIFT_WORKSPACE_FLOATS, ShiftWorkspace, assets, embedded_sensors, run_shift_demo,
    };
    use nmflow_fw_qemu::board;

    static mut WORKSPACE: ShiftWorkspace = [0.0; SHIFT_WORKSPACE_FLOATS];

    #[entry]
    fn main() -> ! {
        board::begin(
            assets::SHIFT_MODEL.len(),
            core::mem::size_of::<ShiftWorkspace>(),
        );
        // SAFETY: the only reference to the workspace, taken once in main.
        let ws = unsafe { &mut *core::ptr::addr_of_mut!(WORKSPACE) };
        let (mut test, mut shifted) = embedded_sensors();
        let mut last = board::now();
        let (mut total, mut most, mut decisions) = (0u64, 0u32, 0u32);
        let mut on_decision = || {
            let now = board::now();
            let t = board::ticks(last, now);
            total += u64::from(t);
            most = most.max(t);
            decisions += 1;
            last = board::now();
        };
        let r = run_shift_demo(&mut test, &mut shifted, ws, &mut on_decision);
        board::finish(r, |r| {
            r.log();
            let per = total / u64::from(decisions.max(1));
            defmt::info!(
                "decision: {=u64} SysTick ticks on average, {=u32} at most (~{=u64} and {=u32} instructions under -icount shift=0)",
                per,
                most,
                per * u64::from(board::INSTRUCTIONS_PER_TICK),
                most.saturating_mul(board::INSTRUCTIONS_PER_TICK)
            );
            defmt::info!(
                "stack high-water mark {=usize} bytes",
                board::stack_high_water()
            );
        })
    }
}
