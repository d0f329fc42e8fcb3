//! Sizes on the command line: plain bytes or a K/M/G/T suffix (powers of 1024), and the
//! human-readable form the tools print.

const UNITS: [(&str, u32); 4] = [("k", 10), ("m", 20), ("g", 30), ("t", 40)];

/// Parses `4096`, `64K`, `512m`, `1G`, `2TiB`. Zero, fractions, decimal (`KB`) units and
/// values past `u64` are refused with a message saying what is accepted.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, suffix) = text.split_at(digits);
    let bad = || {
        format!("invalid size '{text}': give bytes, or a number with K, M, G or T (powers of 1024)")
    };
    if number.is_empty() {
        return Err(bad());
    }
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        s => UNITS
            .iter()
            .find(|(unit, _)| s == *unit || s.strip_suffix("ib") == Some(unit))
            .map(|&(_, shift)| shift)
            .ok_or_else(bad)?,
    };
    let value: u64 = number.parse().map_err(|_| bad())?;
    if value == 0 {
        return Err(format!("invalid size '{text}': must be greater than 0"));
    }
    value
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("invalid size '{text}': too large"))
}

/// `1.00 GiB`, `512 B`.
pub fn format_size(bytes: u64) -> String {
    const NAMES: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    while unit + 1 < NAMES.len() && bytes >= 1u64 << (10 * (unit + 1)) {
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    // Precision is only for display.
    let value = bytes as f64 / (1u64 << (10 * unit)) as f64;
    format!("{value:.2} {}", NAMES[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_bytes_and_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("3T"), Ok(3 << 40));
        assert_eq!(parse_size(" 2g "), Ok(2 << 30));
    }

    #[test]
    fn refuses_what_it_cannot_mean_exactly() {
        for bad in [
            "", "G", "-1", "1.5G", "1KB", "1 G", "1P", "1Gx", "x1", "0", "0G", "+5",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_size("16777216T").is_err()); // 2^64
        assert_eq!(parse_size("16777215T"), Ok(16_777_215 << 40));
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("1.5G").unwrap_err().contains("K, M, G or T"));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(1024), "1.00 KiB");
        assert_eq!(format_size(1 << 30), "1.00 GiB");
        assert_eq!(format_size(3 << 29), "1.50 GiB");
        assert_eq!(format_size(u64::MAX), "16384.00 PiB");
    }
}
