//! QEMU mps2-an386 (Cortex-M4F): synthesize a classifier from the embedded nmflow model, classify
//! 300 MNIST-8×8 frames, measure ensemble disagreement on MNIST-8×8 and optdigits windows, report
//! through defmt (semihosting), and exit with status 0 on success.
#![cfg_attr(target_os = "none", no_std, no_main)]

// The firmware is bare-metal only; on the host this binary is empty (the library's tests run there).
#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod firmware {
    use cortex_m::peripheral::syst::SystClkSource;
    use cortex_m_rt::entry;
    use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};
    use defmt_semihosting as _;
    use nmflow_fw_app::{AppWorkspace, assets, embedded_sensors, run_demo};

    static mut WORKSPACE: AppWorkspace = AppWorkspace::new();

    const PAINT: u32 = 0xA5A5_A5A5;

    unsafe extern "C" {
        static mut __sheap: u32;
        static _stack_start: u32;
    }

    /// Fills the free stack (from the end of static data up to just below the current stack pointer)
    /// with a pattern; the high-water mark is where the pattern was overwritten.
    fn paint_stack() {
        let sp = cortex_m::register::msp::read() as usize;
        let bottom = core::ptr::addr_of_mut!(__sheap) as usize;
        let mut p = bottom;
        while p + 256 < sp {
            // SAFETY: [bottom, sp - 256) is unused RAM between the heap start and the live stack.
            unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
            p += 4;
        }
    }

    fn stack_high_water() -> usize {
        let bottom = core::ptr::addr_of_mut!(__sheap) as usize;
        let top = core::ptr::addr_of!(_stack_start) as usize;
        let mut p = bottom;
        // SAFETY: reading words in RAM below the stack pointer.
        while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
            p += 4;
        }
        top - p
    }

    #[entry]
    fn main() -> ! {
        paint_stack();
        let mut cp = cortex_m::Peripherals::take().unwrap_or_else(|| exit(false));
        cp.SYST.set_clock_source(SystClkSource::Core);
        cp.SYST.set_reload(0x00FF_FFFF);
        cp.SYST.clear_current();
        cp.SYST.enable_counter();
        // SAFETY: the only reference to the workspace, taken once in main.
        let ws = unsafe { &mut *core::ptr::addr_of_mut!(WORKSPACE) };
        let (mut test, mut shifted) = embedded_sensors();
        defmt::info!(
            "model {=usize} bytes; workspace {=usize} bytes",
            assets::MODEL.len(),
            AppWorkspace::bytes()
        );
        let mut last = cortex_m::peripheral::SYST::get_current();
        let mut ticks_per_synthesis = 0u32;
        let mut first = true;
        let mut on_synthesis = |_seed: u64| {
            let now = cortex_m::peripheral::SYST::get_current();
            if first {
                ticks_per_synthesis = last.wrapping_sub(now) & 0x00FF_FFFF;
                first = false;
            }
            last = now;
        };
        match run_demo(&mut test, &mut shifted, ws, &mut on_synthesis) {
            Ok(r) => {
                r.log();
                defmt::info!(
                    "synthesis: {=u32} SysTick ticks (~{=u32} instructions under -icount shift=0)",
                    ticks_per_synthesis,
                    ticks_per_synthesis.saturating_mul(40)
                );
                defmt::info!("stack high-water mark {=usize} bytes", stack_high_water());
                exit(true)
            }
            Err(e) => {
                defmt::error!("failed: {}", defmt::Debug2Format(&e));
                exit(false)
            }
        }
    }

    fn exit(ok: bool) -> ! {
        debug::exit(if ok { EXIT_SUCCESS } else { EXIT_FAILURE });
        // Unreachable under QEMU (semihosting exit ends it); on a probe, sleep.
        loop {
            cortex_m::asm::wfi();
        }
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo) -> ! {
        defmt::error!("panic");
        exit(false)
    }
}
