//! Finite-field Diffie-Hellman over the RFC 3526 MODP group 14 (2048-bit safe prime,
//! generator 2), for the KE payload (RFC 7296 §3.4).
//!
//! Montgomery arithmetic on 32 little-endian 64-bit limbs. What depends on the secret
//! exponent runs in constant time: every exponent bit (leading zeros included, so only the
//! exponent's *length* in octets shows) costs the same squarings and multiplications, table
//! entries are read with a masked scan of the whole table, and the Montgomery reduction's
//! final subtraction is a masked select. Checks of the peer's public value (range and
//! subgroup membership through the Jacobi symbol, RFC 6989 §2.1) are variable-time: that
//! value is public.

use std::sync::OnceLock;

use zeroize::Zeroize;

use super::Error;

/// Limbs of a 2048-bit number.
const N: usize = 32;
/// Octets of a public value or shared secret (RFC 7296 §3.4: padded to the prime's length).
pub const MODP_2048_LEN: usize = N * 8;
/// Transform ID of the 2048-bit MODP group (IANA "Transform Type 4").
pub const MODP_2048: i64 = 14;

type Limbs = [u64; N];

/// RFC 3526 §3: p = 2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 }, big-endian.
const MODP_2048_P: [u8; MODP_2048_LEN] = hex_prime(concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
));

const fn hex_prime(text: &str) -> [u8; MODP_2048_LEN] {
    let s = text.as_bytes();
    let mut out = [0u8; MODP_2048_LEN];
    let mut i = 0;
    while i < MODP_2048_LEN {
        out[i] = (nibble(s[2 * i]) << 4) | nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("not a hex digit"),
    }
}

/// The prime with its Montgomery constants, computed once.
struct Group {
    p: Limbs,
    /// -p^-1 mod 2^64.
    n0: u64,
    /// R mod p and R^2 mod p, R = 2^2048.
    one: Limbs,
    r2: Limbs,
}

fn modp_2048() -> &'static Group {
    static GROUP: OnceLock<Group> = OnceLock::new();
    GROUP.get_or_init(|| {
        let p = from_be(&MODP_2048_P);
        // Newton's iteration for p^-1 mod 2^64 (p is odd): each step doubles the good bits.
        let mut inv: u64 = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(p[0].wrapping_mul(inv)));
        }
        // R mod p = 2^2048 - p, as p > 2^2047; then R^2 mod p by 2048 modular doublings.
        let (one, _) = sub(&[0; N], &p);
        let mut r2 = one;
        for _ in 0..2048 {
            r2 = double_mod(&r2, &p);
        }
        Group {
            p,
            n0: inv.wrapping_neg(),
            one,
            r2,
        }
    })
}

fn from_be(bytes: &[u8; MODP_2048_LEN]) -> Limbs {
    let mut out = [0u64; N];
    for (i, chunk) in bytes.rchunks_exact(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        out[i] = u64::from_be_bytes(word);
    }
    out
}

fn to_be(x: &Limbs) -> Vec<u8> {
    let mut out = Vec::with_capacity(MODP_2048_LEN);
    for limb in x.iter().rev() {
        out.extend_from_slice(&limb.to_be_bytes());
    }
    out
}

/// a - b and the final borrow (0 or 1).
fn sub(a: &Limbs, b: &Limbs) -> (Limbs, u64) {
    let mut out = [0u64; N];
    let mut borrow = 0u64;
    for i in 0..N {
        let (d, b1) = a[i].overflowing_sub(b[i]);
        let (d, b2) = d.overflowing_sub(borrow);
        out[i] = d;
        borrow = u64::from(b1 | b2);
    }
    (out, borrow)
}

/// `mask` all ones picks `a`, all zeros `b`.
fn select(mask: u64, a: &Limbs, b: &Limbs) -> Limbs {
    let mut out = [0u64; N];
    for i in 0..N {
        out[i] = (a[i] & mask) | (b[i] & !mask);
    }
    out
}

/// (hi:x) - p when that is non-negative, else x; x < 2p. Constant time.
fn reduce_once(x: &Limbs, hi: u64, p: &Limbs) -> Limbs {
    let (d, borrow) = sub(x, p);
    let keep_d = hi | (borrow ^ 1); // 1 when hi:x >= p
    select(keep_d.wrapping_neg(), &d, x)
}

/// 2a mod p for a < p. Constant time.
fn double_mod(a: &Limbs, p: &Limbs) -> Limbs {
    let mut out = [0u64; N];
    let mut carry = 0u64;
    for i in 0..N {
        out[i] = (a[i] << 1) | carry;
        carry = a[i] >> 63;
    }
    reduce_once(&out, carry, p)
}

/// A column sum: 128 bits and a count of overflows past them.
#[derive(Clone, Copy, Default)]
struct Column(u128, u64);

impl Column {
    #[inline(always)]
    fn add(&mut self, x: u128) {
        let (sum, carry) = self.0.overflowing_add(x);
        self.0 = sum;
        self.1 += u64::from(carry);
    }

    #[inline(always)]
    fn merge(&mut self, other: Column) {
        self.add(other.0);
        self.1 += other.1;
    }

    /// The low limb out; the rest moves down one limb.
    #[inline(always)]
    fn shift(&mut self) -> u64 {
        let low = self.0 as u64;
        self.0 = (self.0 >> 64) | (u128::from(self.1) << 64);
        self.1 = 0;
        low
    }
}

#[inline(always)]
fn wide(a: u64, b: u64) -> u128 {
    u128::from(a) * u128::from(b)
}

/// Montgomery product a * b * R^-1 mod p for a, b < p, by product scanning with the
/// reduction folded into each column (FIPS, Koç et al. 1996). The a*b and m*p products of a
/// column go to two sums, two independent carry chains: faster here than operand scanning.
/// Constant time.
fn mont_mul(a: &Limbs, b: &Limbs, g: &Group) -> Limbs {
    let p = &g.p;
    let mut m = [0u64; N];
    let mut out = [0u64; N];
    let mut acc = Column::default();
    for k in 0..N {
        let (mut ab, mut mp) = (Column::default(), Column::default());
        for i in 0..k {
            ab.add(wide(a[i], b[k - i]));
            mp.add(wide(m[i], p[k - i]));
        }
        ab.add(wide(a[k], b[0]));
        acc.merge(ab);
        acc.merge(mp);
        end_column(&mut acc, k, &mut m, &mut out, g);
    }
    for k in N..2 * N - 1 {
        let (mut ab, mut mp) = (Column::default(), Column::default());
        for i in k + 1 - N..N {
            ab.add(wide(a[i], b[k - i]));
            mp.add(wide(m[i], p[k - i]));
        }
        acc.merge(ab);
        acc.merge(mp);
        end_column(&mut acc, k, &mut m, &mut out, g);
    }
    finish_columns(acc, out, m, p)
}

/// Ends column `k`: below N it picks m[k] so that adding m[k] * p clears the low limb,
/// above it the low limb is a limb of the result.
#[inline(always)]
fn end_column(acc: &mut Column, k: usize, m: &mut Limbs, out: &mut Limbs, g: &Group) {
    if k < N {
        m[k] = (acc.0 as u64).wrapping_mul(g.n0);
        acc.add(wide(m[k], g.p[0]));
        acc.shift();
    } else {
        out[k - N] = acc.shift();
    }
}

/// The last limb and the final subtraction; wipes the scratch limbs.
fn finish_columns(mut acc: Column, mut out: Limbs, mut m: Limbs, p: &Limbs) -> Limbs {
    out[N - 1] = acc.shift();
    let result = reduce_once(&out, acc.0 as u64, p);
    m.zeroize();
    out.zeroize();
    result
}

/// a * a * R^-1 mod p: `mont_mul` with each cross product a[i] a[j] (i < j) computed once
/// and doubled. Constant time.
fn mont_sqr(a: &Limbs, g: &Group) -> Limbs {
    let p = &g.p;
    let mut m = [0u64; N];
    let mut out = [0u64; N];
    let mut acc = Column::default();
    for k in 0..2 * N - 1 {
        let (mut cross, mut mp) = (Column::default(), Column::default());
        let half = k.div_ceil(2); // i < half <=> i < k - i
        let mut i = k.saturating_sub(N - 1);
        while i < half {
            cross.add(wide(a[i], a[k - i]));
            mp.add(wide(m[i], p[k - i]));
            i += 1;
        }
        while i < k.min(N) {
            mp.add(wide(m[i], p[k - i]));
            i += 1;
        }
        // acc += 2 * cross (+ the square a[k/2]^2 on even columns) + mp
        acc.add(cross.0 << 1);
        acc.1 += 2 * cross.1 + (cross.0 >> 127) as u64;
        if k % 2 == 0 {
            acc.add(wide(a[k / 2], a[k / 2]));
        }
        acc.merge(mp);
        end_column(&mut acc, k, &mut m, &mut out, g);
    }
    finish_columns(acc, out, m, p)
}

/// Reads `table[index]` by touching every entry, so the index does not show in the memory
/// access pattern.
fn lookup(table: &[Limbs; 16], index: u8) -> Limbs {
    let mut entry = [0u64; N];
    for (k, row) in table.iter().enumerate() {
        let diff = u64::from(k as u8 ^ index);
        let equal = ((diff | diff.wrapping_neg()) >> 63) ^ 1; // 1 when k == index
        entry = select(equal.wrapping_neg(), row, &entry);
    }
    entry
}

/// Exponent octets the fixed-base table for g = 2 covers (our own keys are shorter).
const COMB_OCTETS: usize = 32;

/// table[i][j] = 2^(j * 16^i) in the Montgomery domain, for the 64 nibbles of a 32-octet
/// exponent: g^x is then 64 multiplications and no squaring. 256 KiB, built on first use.
fn base2_table(g: &Group) -> &'static [[Limbs; 16]] {
    static TABLE: OnceLock<Vec<[Limbs; 16]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut rows = Vec::with_capacity(2 * COMB_OCTETS);
        let mut two = [0u64; N];
        two[0] = 2;
        let mut base = mont_mul(&two, &g.r2, g);
        for _ in 0..2 * COMB_OCTETS {
            let mut row = [[0u64; N]; 16];
            row[0] = g.one;
            for j in 1..16 {
                row[j] = mont_mul(&row[j - 1], &base, g);
            }
            base = mont_mul(&row[15], &base, g);
            rows.push(row);
        }
        rows
    })
}

/// The private exponent: 1-256 octets, not zero. Its length is public (it sets the work).
fn check_private(private: &[u8]) -> Result<(), Error> {
    if private.is_empty() || private.len() > MODP_2048_LEN {
        return Err(Error::Crypto("MODP private value must be 1-256 octets"));
    }
    if private.iter().fold(0u8, |acc, &b| acc | b) == 0 {
        return Err(Error::Crypto("MODP private value must not be zero"));
    }
    Ok(())
}

fn check_group(group: i64) -> Result<&'static Group, Error> {
    if group != MODP_2048 {
        return Err(Error::Crypto("unsupported MODP group"));
    }
    Ok(modp_2048())
}

/// Our public value g^x mod p (g = 2), big-endian, padded to 256 octets.
pub fn modp_public(group: i64, private: &[u8]) -> Result<Vec<u8>, Error> {
    let g = check_group(group)?;
    check_private(private)?;
    let mut acc = g.one;
    if private.len() <= COMB_OCTETS {
        let table = base2_table(g);
        // Nibble i (from the least significant) selects 2^(nibble * 16^i).
        let nibbles = private.iter().rev().flat_map(|&b| [b & 15, b >> 4]);
        for (row, nib) in table.iter().zip(nibbles) {
            let mut entry = lookup(row, nib);
            acc = mont_mul(&acc, &entry, g);
            entry.zeroize();
        }
        return Ok(finish(acc, g));
    }
    // Longer exponents: square, then double in the Montgomery domain and keep the double
    // when the bit is set.
    for &byte in private {
        for bit in (0..8).rev() {
            acc = mont_sqr(&acc, g);
            let doubled = double_mod(&acc, &g.p);
            let mask = (u64::from(byte >> bit) & 1).wrapping_neg();
            acc = select(mask, &doubled, &acc);
        }
    }
    Ok(finish(acc, g))
}

/// Out of the Montgomery domain, as big-endian octets; wipes `acc`.
fn finish(mut acc: Limbs, g: &Group) -> Vec<u8> {
    let mut one = [0u64; N];
    one[0] = 1;
    let out = mont_mul(&acc, &one, g);
    acc.zeroize();
    to_be(&out)
}

/// The shared secret y^x mod p for the peer's public value `peer` (256 octets), big-endian
/// and padded. The peer value must satisfy 1 < y < p - 1 and lie in the prime-order
/// subgroup (Jacobi symbol (y/p) = 1, as p is a safe prime).
pub fn modp_shared(group: i64, private: &[u8], peer: &[u8]) -> Result<Vec<u8>, Error> {
    let g = check_group(group)?;
    check_private(private)?;
    let peer: &[u8; MODP_2048_LEN] = peer
        .try_into()
        .map_err(|_| Error::Crypto("MODP public value has the wrong length"))?;
    let y = from_be(peer);
    let mut p_minus_1 = g.p;
    p_minus_1[0] -= 1; // p is odd
    let (_, below_p_minus_1) = sub(&y, &p_minus_1);
    let mut two = [0u64; N];
    two[0] = 2;
    let (_, below_two) = sub(&y, &two);
    if below_p_minus_1 == 0 || below_two == 1 {
        return Err(Error::Crypto("MODP public value out of range"));
    }
    if jacobi(y, g.p) != 1 {
        return Err(Error::Crypto(
            "MODP public value is not in the prime-order subgroup",
        ));
    }
    // Fixed 4-bit windows: table[k] = y^k in the Montgomery domain.
    let mut table = [[0u64; N]; 16];
    table[0] = g.one;
    table[1] = mont_mul(&y, &g.r2, g);
    for k in 2..16 {
        table[k] = mont_mul(&table[k - 1], &table[1], g);
    }
    let mut acc = g.one;
    for &byte in private {
        for nib in [byte >> 4, byte & 15] {
            for _ in 0..4 {
                acc = mont_sqr(&acc, g);
            }
            let mut entry = lookup(&table, nib);
            acc = mont_mul(&acc, &entry, g);
            entry.zeroize();
        }
    }
    table.zeroize();
    Ok(finish(acc, g))
}

/// x >> k for k < 64 * x.len().
fn shr(x: &mut [u64], k: usize) {
    let (limbs, bits) = (k / 64, (k % 64) as u32);
    for i in 0..x.len() {
        let lo = x.get(i + limbs).copied().unwrap_or(0);
        let hi = x.get(i + limbs + 1).copied().unwrap_or(0);
        x[i] = if bits == 0 {
            lo
        } else {
            (lo >> bits) | (hi << (64 - bits))
        };
    }
}

/// a -= b over equal-length slices; returns the borrow.
fn sub_in_place(a: &mut [u64], b: &[u64]) -> bool {
    let mut borrow = false;
    for (x, &y) in a.iter_mut().zip(b) {
        let (d, b1) = x.overflowing_sub(y);
        let (d, b2) = d.overflowing_sub(u64::from(borrow));
        *x = d;
        borrow = b1 | b2;
    }
    borrow
}

/// a < b over equal-length slices.
fn less(a: &[u64], b: &[u64]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// The Jacobi symbol (a/n) for odd n by the binary algorithm, working only on the limbs
/// still in use; variable time (its input is public).
fn jacobi(a: Limbs, n: Limbs) -> i32 {
    let (mut a_limbs, mut n_limbs) = (a, n);
    let (mut a, mut n) = (&mut a_limbs, &mut n_limbs);
    let mut result = 1;
    let mut len = N;
    loop {
        while len > 0 && a[len - 1] == 0 && n[len - 1] == 0 {
            len -= 1;
        }
        let Some(i) = a[..len].iter().position(|&l| l != 0) else {
            break;
        };
        let tz = i * 64 + a[i].trailing_zeros() as usize;
        shr(&mut a[..len], tz);
        // (2/n) = -1 exactly when n = 3 or 5 mod 8.
        if tz % 2 == 1 && matches!(n[0] & 7, 3 | 5) {
            result = -result;
        }
        if less(&a[..len], &n[..len]) {
            // Both odd: (a/n) = (n/a), negated when both are 3 mod 4.
            if a[0] & 3 == 3 && n[0] & 3 == 3 {
                result = -result;
            }
            std::mem::swap(&mut a, &mut n);
        }
        sub_in_place(&mut a[..len], &n[..len]); // ((a - n)/n) = (a/n)
    }
    let mut one = [0u64; N];
    one[0] = 1;
    if *n == one {
        result
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(n: u64) -> Vec<u8> {
        let mut v = vec![0u8; MODP_2048_LEN];
        v[MODP_2048_LEN - 8..].copy_from_slice(&n.to_be_bytes());
        v
    }

    #[test]
    fn small_exponents() {
        // 2^1 and 2^10 need no reduction.
        assert_eq!(modp_public(14, &[1]).unwrap(), be(2));
        assert_eq!(modp_public(14, &[0, 10]).unwrap(), be(1024));
        assert_eq!(modp_shared(14, &[3], &be(4)).unwrap(), be(64));
    }

    #[test]
    fn agreement() {
        let a = [0x5au8; 32];
        let b = [0xc3u8; 32];
        let ya = modp_public(14, &a).unwrap();
        let yb = modp_public(14, &b).unwrap();
        assert_eq!(
            modp_shared(14, &a, &yb).unwrap(),
            modp_shared(14, &b, &ya).unwrap()
        );
    }

    #[test]
    fn rejects_bad_input() {
        let x = [7u8; 32];
        let p = MODP_2048_P.to_vec();
        let mut p_minus_1 = p.clone();
        p_minus_1[MODP_2048_LEN - 1] -= 1;
        for bad in [be(0), be(1), p_minus_1, p, vec![0xff; MODP_2048_LEN]] {
            assert!(modp_shared(14, &x, &bad).is_err());
        }
        assert!(modp_shared(14, &x, &be(2)[1..]).is_err());
        assert!(modp_shared(15, &x, &be(2)).is_err());
        assert!(modp_public(14, &[]).is_err());
        assert!(modp_public(14, &[0, 0]).is_err());
        // p - 2 = -2 mod p is not a square (p = 7 mod 8 makes -1 a non-residue, 2 a residue).
        let mut minus_two = MODP_2048_P.to_vec();
        minus_two[MODP_2048_LEN - 1] -= 2;
        assert!(modp_shared(14, &x, &minus_two).is_err());
    }

    #[test]
    fn jacobi_small() {
        let mut n = [0u64; N];
        n[0] = 7;
        let sym = |a: u64| {
            let mut v = [0u64; N];
            v[0] = a;
            jacobi(v, n)
        };
        // Squares mod 7: 1, 2, 4.
        assert_eq!(
            [sym(1), sym(2), sym(3), sym(4), sym(5), sym(6), sym(7)],
            [1, 1, -1, 1, -1, -1, 0]
        );
    }
}
