//! nRF52840-DK: synthesize an MNIST `mlp:784-10-10` classifier from the embedded nmflow model
//! (int8 set field), classify the 200 MNIST test images stored in flash, and report accuracy and
//! the DWT cycle count of the synthesis over RTT (defmt). Linking this binary proves that the
//! model, the images and the workspace fit the board (1 MiB flash, 256 KiB RAM).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use defmt_rtt as _;
use nmflow_fw_app::{MnistWorkspace, assets, run_mnist_demo};
use nmflow_fw_nrf52840_dk::{enable_cycle_counter, report_and_sleep};
use panic_probe as _;

static mut WORKSPACE: MnistWorkspace = MnistWorkspace::new();

#[entry]
fn main() -> ! {
    enable_cycle_counter();
    // SAFETY: the only reference to the workspace, taken once in main.
    let ws = unsafe { &mut *core::ptr::addr_of_mut!(WORKSPACE) };
    defmt::info!(
        "model {=usize} bytes; workspace {=usize} bytes",
        assets::MNIST_MODEL.len(),
        MnistWorkspace::bytes()
    );
    let start = cortex_m::peripheral::DWT::cycle_count();
    let mut on_synthesis = |_| {
        let cycles = cortex_m::peripheral::DWT::cycle_count().wrapping_sub(start);
        defmt::info!("synthesis: {=u32} cycles", cycles);
    };
    report_and_sleep(run_mnist_demo(ws, &mut on_synthesis), |r| r.log())
}
