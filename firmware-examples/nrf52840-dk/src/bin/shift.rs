//! nRF52840-DK: decide, with the embedded model's calibrated shift section, on 50 windows of 20
//! frames from each of the two I²C frame sensors (the test stream and the comparison stream), and
//! report the flag counts and the DWT cycle count per decision over RTT (defmt). Linking this
//! binary proves that the model, the detector's workspace and the code fit the board.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use defmt_rtt as _;
use nmflow_fw_app::{SHIFT_WORKSPACE_FLOATS, ShiftWorkspace, assets, run_shift_demo};
use nmflow_fw_nrf52840_dk::{report_and_sleep, sensors, start};
use panic_probe as _;

static mut WORKSPACE: ShiftWorkspace = [0.0; SHIFT_WORKSPACE_FLOATS];

#[entry]
fn main() -> ! {
    let shared = start();
    let (mut test, mut shifted) = sensors(&shared);
    // SAFETY: the only reference to the workspace, taken once in main.
    let ws = unsafe { &mut *core::ptr::addr_of_mut!(WORKSPACE) };
    defmt::info!("model {=usize} bytes", assets::SHIFT_MODEL.len());
    let mut start = cortex_m::peripheral::DWT::cycle_count();
    let mut on_decision = || {
        let now = cortex_m::peripheral::DWT::cycle_count();
        defmt::info!("decision: {=u32} cycles", now.wrapping_sub(start));
        start = now;
    };
    report_and_sleep(
        run_shift_demo(&mut test, &mut shifted, ws, &mut on_decision),
        |r| r.log(),
    )
}
