//! nRF52840-DK: synthesize classifiers from the embedded nmflow model and classify 8×8 frames read
//! from an I²C frame sensor on TWIM0 (SCL P0.27, SDA P0.26; addresses 0x42 for the test stream,
//! 0x43 for the comparison stream), then report accuracy, ensemble statistics and the DWT cycle
//! count of one synthesis over RTT (defmt).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use defmt_rtt as _;
use nmflow_fw_app::{AppWorkspace, assets, run_demo};
use nmflow_fw_nrf52840_dk::{report_and_sleep, sensors, start};
use panic_probe as _;

static mut WORKSPACE: AppWorkspace = AppWorkspace::new();

#[entry]
fn main() -> ! {
    let shared = start();
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
    report_and_sleep(
        run_demo(&mut test, &mut shifted, ws, &mut on_synthesis),
        |r| r.log(),
    )
}
