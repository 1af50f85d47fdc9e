//! nRF52840-DK: synthesize classifiers from the embedded nmflow model and classify 8×8 frames read
//! from an I²C frame sensor on TWIM0 (SCL P0.27, SDA P0.26; addresses 0x42 for the test stream,
//! 0x43 for the comparison stream), then report accuracy, ensemble statistics and the DWT cycle
//! count of one synthesis over RTT (defmt).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use defmt_rtt as _;
use nmflow_fw_app::{AppWorkspace, assets, run_demo};
use nmflow_fw_nrf52840_dk::{bus, sensors};
use nrf52840_hal as hal;
use panic_probe as _;

static mut WORKSPACE: AppWorkspace = AppWorkspace::new();

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap_or_else(|| panic!("core peripherals taken"));
    let dp = hal::pac::Peripherals::take().unwrap_or_else(|| panic!("peripherals taken"));
    cp.DCB.enable_trace();
    cp.DWT.enable_cycle_counter();
    let shared = core::cell::RefCell::new(bus(dp.TWIM0, dp.P0));
    let (mut test, mut shifted) = sensors(&shared);
    // SAFETY: the only reference to the workspace, taken once in main.
    let ws = unsafe { &mut *core::ptr::addr_of_mut!(WORKSPACE) };
    defmt::info!("model {=usize} bytes", assets::MODEL.len());
    let mut start = cortex_m::peripheral::DWT::cycle_count();
    let mut first = true;
    let mut on_synthesis = |_| {
        let now = cortex_m::peripheral::DWT::cycle_count();
        if first {
            defmt::info!("synthesis: {=u32} cycles", now.wrapping_sub(start));
            first = false;
        }
        start = now;
    };
    match run_demo(&mut test, &mut shifted, ws, &mut on_synthesis) {
        Ok(r) => r.log(),
        Err(e) => defmt::error!("failed: {}", defmt::Debug2Format(&e)),
    }
    loop {
        cortex_m::asm::wfi();
    }
}
