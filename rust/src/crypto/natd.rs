//! NAT_DETECTION_*_IP notification data (RFC 7296 §2.23).

use sha1::{Digest, Sha1};

use super::Error;

const SPI_LEN: usize = 8;

/// SHA-1(SPIi | SPIr | IP | port): `ip` is 4 or 16 packed octets, `port` goes big-endian.
pub fn nat_detection_hash(
    spi_i: &[u8],
    spi_r: &[u8],
    ip: &[u8],
    port: i64,
) -> Result<[u8; 20], Error> {
    if spi_i.len() != SPI_LEN || spi_r.len() != SPI_LEN {
        return Err(Error::Value("IKE SPIs must be 8 octets"));
    }
    if ip.len() != 4 && ip.len() != 16 {
        return Err(Error::Value(
            "ip must be 4 (IPv4) or 16 (IPv6) packed octets",
        ));
    }
    let port = u16::try_from(port).map_err(|_| Error::Value("port must be 0-65535"))?;
    let mut hash = Sha1::new();
    hash.update(spi_i);
    hash.update(spi_r);
    hash.update(ip);
    hash.update(port.to_be_bytes());
    Ok(hash.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_lengths() {
        let spi = [0u8; 8];
        assert!(nat_detection_hash(&spi, &spi, &[0; 5], 500).is_err());
        assert!(nat_detection_hash(&spi, &spi[..7], &[0; 4], 500).is_err());
        assert!(nat_detection_hash(&spi, &spi, &[0; 4], 65536).is_err());
        assert!(nat_detection_hash(&spi, &spi, &[0; 16], 4500).is_ok());
    }
}
