//! nRF52840-DK: synthesize classifiers from the embedded nmflow model and classify 8×8 frames read
//! from an I²C frame sensor on TWIM0 (SCL P0.27, SDA P0.26; addresses 0x42 for the test stream,
//! 0x43 for the comparison stream), then report accuracy, ensemble statistics and the DWT cycle
//! count of one synthesis over RTT (defmt).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use defmt_rtt as _;
use nmflow_fw_app::{AppWorkspace, FrameSensor, SHIFTED_ADDRESS, TEST_ADDRESS, assets, run_demo};
use nrf52840_hal::{self as hal, gpio::p0, twim};
use panic_probe as _;

static mut WORKSPACE: AppWorkspace = AppWorkspace::new();

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap_or_else(|| panic!("core peripherals taken"));
    let dp = hal::pac::Peripherals::take().unwrap_or_else(|| panic!("peripherals taken"));
    cp.DCB.enable_trace();
    cp.DWT.enable_cycle_counter();
    let port0 = p0::Parts::new(dp.P0);
    let pins = twim::Pins {
        scl: port0.p0_27.into_floating_input().degrade(),
        sda: port0.p0_26.into_floating_input().degrade(),
    };
    let bus = twim::Twim::new(dp.TWIM0, pins, twim::Frequency::K400);
    // Both streams share the bus through a critical-section device wrapper in a real design; here
    // one sensor serves both addresses in turn.
    let shared = core::cell::RefCell::new(bus);
    let mut test = FrameSensor::new(RefI2c(&shared), TEST_ADDRESS);
    let mut shifted = FrameSensor::new(RefI2c(&shared), SHIFTED_ADDRESS);
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

/// Shares one bus between two sensors (single-threaded firmware: a `RefCell` suffices).
struct RefI2c<'a, B>(&'a core::cell::RefCell<B>);

impl<B: embedded_hal::i2c::ErrorType> embedded_hal::i2c::ErrorType for RefI2c<'_, B> {
    type Error = B::Error;
}

impl<B: embedded_hal::i2c::I2c> embedded_hal::i2c::I2c for RefI2c<'_, B> {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [embedded_hal::i2c::Operation<'_>],
    ) -> Result<(), Self::Error> {
        self.0.borrow_mut().transaction(address, operations)
    }
}
