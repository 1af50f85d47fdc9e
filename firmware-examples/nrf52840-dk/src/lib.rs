//! What the nRF52840-DK binaries share: the two frame sensors on TWIM0 (SCL P0.27, SDA P0.26;
//! addresses 0x42 for the test stream, 0x43 for the comparison stream, 0x44 for a task's labeled
//! support frames), sharing one bus.
#![no_std]

use core::cell::RefCell;

use nmflow_fw_app::{FrameSensor, SHIFTED_ADDRESS, SUPPORT_ADDRESS, TEST_ADDRESS};
use nrf52840_hal::{self as hal, gpio::p0, twim};

/// The board's I²C bus.
pub type Bus = twim::Twim<hal::pac::TWIM0>;

/// Enables the DWT cycle counter the binaries time their work with.
pub fn enable_cycle_counter() {
    let mut cp = cortex_m::Peripherals::take().unwrap_or_else(|| panic!("core peripherals taken"));
    cp.DCB.enable_trace();
    cp.DWT.enable_cycle_counter();
}

/// Enables the cycle counter and opens the sensors' bus (TWIM0), to be shared by the sensors.
pub fn start() -> RefCell<Bus> {
    enable_cycle_counter();
    let dp = hal::pac::Peripherals::take().unwrap_or_else(|| panic!("peripherals taken"));
    RefCell::new(bus(dp.TWIM0, dp.P0))
}

/// Logs `result` through `log` (or the error), then sleeps.
pub fn report_and_sleep<R, E: core::fmt::Debug>(result: Result<R, E>, log: impl FnOnce(&R)) -> ! {
    match result {
        Ok(r) => log(&r),
        Err(e) => defmt::error!("failed: {}", defmt::Debug2Format(&e)),
    }
    loop {
        cortex_m::asm::wfi();
    }
}

/// Opens TWIM0 at 400 kHz on P0.27/P0.26.
pub fn bus(twim0: hal::pac::TWIM0, port0: hal::pac::P0) -> Bus {
    let port0 = p0::Parts::new(port0);
    let pins = twim::Pins {
        scl: port0.p0_27.into_floating_input().degrade(),
        sda: port0.p0_26.into_floating_input().degrade(),
    };
    twim::Twim::new(twim0, pins, twim::Frequency::K400)
}

/// The test-stream and comparison-stream sensors on one shared bus.
pub fn sensors(
    shared: &RefCell<Bus>,
) -> (FrameSensor<RefI2c<'_, Bus>>, FrameSensor<RefI2c<'_, Bus>>) {
    (
        FrameSensor::new(RefI2c(shared), TEST_ADDRESS),
        FrameSensor::new(RefI2c(shared), SHIFTED_ADDRESS),
    )
}

/// The sensor of a task's labeled support frames on the shared bus.
pub fn support_sensor(shared: &RefCell<Bus>) -> FrameSensor<RefI2c<'_, Bus>> {
    FrameSensor::new(RefI2c(shared), SUPPORT_ADDRESS)
}

/// Shares one bus between two sensors (single-threaded firmware: a `RefCell` suffices; a real
/// design with interrupts would use a critical-section device wrapper).
pub struct RefI2c<'a, B>(&'a RefCell<B>);

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
