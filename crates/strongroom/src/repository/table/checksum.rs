//! A fast non-cryptographic checksum of run files and manifests (xxHash64-style rounds).
//! Must not be relied on against tampering: it catches torn and damaged cache files only.

// ---------------------------------------------------------------------------------------------
// Checksum

pub(super) const P1: u64 = 0x9E37_79B1_85EB_CA87;
pub(super) const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
pub(super) const P3: u64 = 0x1656_67B1_9E37_79F9;
pub(super) const P4: u64 = 0x85EB_CA77_C2B2_AE63;
pub(super) const P5: u64 = 0x27D4_EB2F_1656_67C5;

/// An xxHash64-style streaming checksum (not bit-compatible with xxHash): catches torn and
/// garbled files, not tampering.
#[derive(Clone)]
pub(super) struct Checksum {
    pub(super) acc: [u64; 4],
    pub(super) tail: [u8; 32],
    pub(super) tail_len: usize,
    pub(super) total: u64,
}

pub(super) fn round(acc: u64, word: u64) -> u64 {
    acc.wrapping_add(word.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

pub(super) fn word(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

impl Checksum {
    pub(super) fn new() -> Self {
        Checksum {
            acc: [P1.wrapping_add(P2), P2, 0, 0u64.wrapping_sub(P1)],
            tail: [0; 32],
            tail_len: 0,
            total: 0,
        }
    }

    pub(super) fn stripe(acc: &mut [u64; 4], stripe: &[u8]) {
        for (i, a) in acc.iter_mut().enumerate() {
            *a = round(*a, word(&stripe[i * 8..]));
        }
    }

    pub(super) fn update(&mut self, mut data: &[u8]) {
        self.total = self.total.wrapping_add(data.len() as u64);
        if self.tail_len > 0 {
            let take = (32 - self.tail_len).min(data.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&data[..take]);
            self.tail_len += take;
            data = &data[take..];
            if self.tail_len < 32 {
                return;
            }
            let tail = self.tail;
            Self::stripe(&mut self.acc, &tail);
            self.tail_len = 0;
        }
        let mut stripes = data.chunks_exact(32);
        for s in &mut stripes {
            Self::stripe(&mut self.acc, s);
        }
        let rest = stripes.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    pub(super) fn finish(&self) -> u64 {
        let [a, b, c, d] = self.acc;
        let mut h = a
            .rotate_left(1)
            .wrapping_add(b.rotate_left(7))
            .wrapping_add(c.rotate_left(12))
            .wrapping_add(d.rotate_left(18))
            .wrapping_add(self.total);
        let mut words = self.tail[..self.tail_len].chunks_exact(8);
        for w in &mut words {
            h ^= round(0, word(w));
            h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        }
        for &byte in words.remainder() {
            h ^= u64::from(byte).wrapping_mul(P5);
            h = h.rotate_left(11).wrapping_mul(P1);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(P2);
        h ^= h >> 29;
        h = h.wrapping_mul(P3);
        h ^ (h >> 32)
    }
}

pub(super) fn checksum(data: &[u8]) -> u64 {
    let mut sum = Checksum::new();
    sum.update(data);
    sum.finish()
}
