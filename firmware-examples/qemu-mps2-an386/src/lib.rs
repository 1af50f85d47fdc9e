//! What the QEMU binaries share (the MNIST demos' whole body, [`board::run_mnist_and_exit`]): the SysTick instruction counter, stack painting for the
//! high-water mark, the semihosting exit and the panic handler. Empty on the host.
#![no_std]

#[cfg(target_os = "none")]
pub mod board {
    use cortex_m::peripheral::SYST;
    use cortex_m::peripheral::syst::SystClkSource;
    use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};
    use defmt_semihosting as _;

    const PAINT: u32 = 0xA5A5_A5A5;
    /// Instructions per SysTick tick under `-icount shift=0` (1 ns of virtual time per
    /// instruction, a 25 MHz core clock).
    pub const INSTRUCTIONS_PER_TICK: u32 = 40;

    unsafe extern "C" {
        static mut __sheap: u32;
        static _stack_start: u32;
    }

    /// Fills the free stack (from the end of static data up to just below the current stack
    /// pointer) with a pattern; [`stack_high_water`] finds where it was overwritten.
    pub fn paint_stack() {
        let sp = cortex_m::register::msp::read() as usize;
        let bottom = core::ptr::addr_of_mut!(__sheap) as usize;
        let mut p = bottom;
        while p + 256 < sp {
            // SAFETY: [bottom, sp - 256) is unused RAM between the heap start and the live stack.
            unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
            p += 4;
        }
    }

    /// Bytes of stack used at most since [`paint_stack`].
    pub fn stack_high_water() -> usize {
        let bottom = core::ptr::addr_of_mut!(__sheap) as usize;
        let top = core::ptr::addr_of!(_stack_start) as usize;
        let mut p = bottom;
        // SAFETY: reading words in RAM below the stack pointer.
        while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
            p += 4;
        }
        top - p
    }

    /// Starts SysTick on the core clock, counting down from its largest reload.
    pub fn start_systick() {
        let mut cp = cortex_m::Peripherals::take().unwrap_or_else(|| exit(false));
        cp.SYST.set_clock_source(SystClkSource::Core);
        cp.SYST.set_reload(0x00FF_FFFF);
        cp.SYST.clear_current();
        cp.SYST.enable_counter();
    }

    /// The SysTick counter now.
    pub fn now() -> u32 {
        SYST::get_current()
    }

    /// Ticks from `earlier` to `later` (the counter counts down and wraps at 24 bits).
    pub fn ticks(earlier: u32, later: u32) -> u32 {
        earlier.wrapping_sub(later) & 0x00FF_FFFF
    }

    /// Logs the instruction count of one synthesis and the stack high-water mark.
    pub fn log_resources(ticks_per_synthesis: u32) {
        defmt::info!(
            "synthesis: {=u32} SysTick ticks (~{=u32} instructions under -icount shift=0)",
            ticks_per_synthesis,
            ticks_per_synthesis.saturating_mul(INSTRUCTIONS_PER_TICK)
        );
        defmt::info!("stack high-water mark {=usize} bytes", stack_high_water());
    }

    /// Starts a binary: paints the stack, starts SysTick and logs the model's and the
    /// workspace's sizes.
    pub fn begin(model_bytes: usize, workspace_bytes: usize) {
        paint_stack();
        start_systick();
        defmt::info!(
            "model {=usize} bytes; workspace {=usize} bytes",
            model_bytes,
            workspace_bytes
        );
    }

    /// Ends a binary: on success `log` reports the result (the lines `run-qemu.sh` compares with
    /// the host's) and the emulation exits with success; an error is logged and it exits with
    /// failure.
    pub fn finish<R, E: core::fmt::Debug>(result: Result<R, E>, log: impl FnOnce(&R)) -> ! {
        match result {
            Ok(r) => {
                log(&r);
                exit(true)
            }
            Err(e) => {
                defmt::error!("failed: {}", defmt::Debug2Format(&e));
                exit(false)
            }
        }
    }

    /// Ends the emulation with success or failure.
    pub fn exit(ok: bool) -> ! {
        debug::exit(if ok { EXIT_SUCCESS } else { EXIT_FAILURE });
        // Unreachable under QEMU (semihosting exit ends it); on a probe, sleep.
        loop {
            cortex_m::asm::wfi();
        }
    }

    /// The MNIST demos' body: logs the model's and the workspace's sizes, synthesizes classifier
    /// [`nmflow_fw_app::MNIST_SEED`] from `model` and classifies the embedded MNIST images,
    /// timing the synthesis; `log` reports the result (the line `run-qemu.sh` compares with the
    /// host's); then the resources, and exits.
    pub fn run_mnist_and_exit<const N: usize>(
        model: &[u8],
        ws: &mut nmflow_runtime::Workspace<N>,
        log: fn(&nmflow_fw_app::MnistReport),
    ) -> ! {
        use nmflow_fw_app::{MNIST_SEED, assets, run_mnist};
        begin(model.len(), nmflow_runtime::Workspace::<N>::bytes());
        let start = now();
        let mut ticks_per_synthesis = 0u32;
        let mut on_synthesis = |_seed: u64| ticks_per_synthesis = ticks(start, now());
        let r = run_mnist(
            model,
            assets::MNIST_IMAGES,
            assets::MNIST_LABELS,
            MNIST_SEED,
            ws,
            &mut on_synthesis,
        );
        finish(r, |r| {
            log(r);
            log_resources(ticks_per_synthesis);
        })
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo) -> ! {
        defmt::error!("panic");
        exit(false)
    }
}
