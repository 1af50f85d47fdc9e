//! nRF52840-DK: adapt to a task from 50 labeled frames (5 per class) read from the support sensor
//! (I²C address 0x44 on TWIM0): the embedded class-conditioned model synthesizes classifiers for
//! the task, which classify 1,000 frames of the test-stream sensor (0x42) under the task's labels;
//! reports accuracies and the DWT cycle count of the first synthesis (with the support set's
//! encoding) over RTT (defmt). Linking this binary proves that the model, the workspace and the
//! code fit the board.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use defmt_rtt as _;
use nmflow_fw_app::{AdaptWorkspace, assets, run_adapt_demo};
use nmflow_fw_nrf52840_dk::{report_and_sleep, sensors, start, support_sensor};
use panic_probe as _;

static mut WORKSPACE: AdaptWorkspace = AdaptWorkspace::new();

#[entry]
fn main() -> ! {
    let shared = start();
    let (mut test, _) = sensors(&shared);
    let mut support = support_sensor(&shared);
    // SAFETY: the only reference to the workspace, taken once in main.
    let ws = unsafe { &mut *core::ptr::addr_of_mut!(WORKSPACE) };
    defmt::info!("model {=usize} bytes", assets::PERM_MODEL.len());
    let start = cortex_m::peripheral::DWT::cycle_count();
    let mut on_synthesis = |k: u64| {
        if k == 0 {
            let now = cortex_m::peripheral::DWT::cycle_count();
            defmt::info!("synthesis: {=u32} cycles", now.wrapping_sub(start));
        }
    };
    report_and_sleep(
        run_adapt_demo(&mut support, &mut test, ws, &mut on_synthesis),
        |r| r.log(),
    )
}
