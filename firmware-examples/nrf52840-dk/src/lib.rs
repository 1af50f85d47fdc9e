//! What the nRF52840-DK binaries share: the two frame sensors on TWIM0 (SCL P0.27, SDA P0.26;
//! addresses 0x42 for the test stream, 0x43 for the comparison stream), sharing one bus.
#![no_std]

use core::cell::RefCell;

use nmflow_fw_app::{FrameSensor, SHIFTED_ADDRESS, TEST_ADDRESS};
use nrf52840_hal::{self as hal, gpio::p0, twim};

/// The board's I²C bus.
pub type Bus = twim::Twim<hal::pac::TWIM0>;

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
