//! CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as used by zip and PNG.

const fn table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static TABLE: [u32; 256] = table();

/// The CRC-32 of `bytes`.
///
/// # Examples
/// ```
/// assert_eq!(nmflow_format::crc::crc32(b"123456789"), 0xCBF4_3926);
/// ```
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        let idx = usize::from((c as u8) ^ b);
        c = TABLE.get(idx).copied().unwrap_or(0) ^ (c >> 8);
    }
    !c
}
