//! Typed mirror of `ikecp.message`: derived wire fields (lengths, counts, chaining,
//! last-substructure markers, SPI sizes except Delete's) are not stored.

use std::borrow::Cow;

/// Payload bytes: borrowed from the datagram when decoding, owned when built by a caller.
pub type Bytes<'a> = Cow<'a, [u8]>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue<'a> {
    /// TV format (AF=1), e.g. KEY_LENGTH.
    Tv(u16),
    /// TLV format (AF=0).
    Tlv(Bytes<'a>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformAttribute<'a> {
    /// Attribute type without the AF bit.
    pub ty: u16,
    pub value: AttrValue<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform<'a> {
    pub ty: u8,
    pub id: u16,
    pub attributes: Vec<TransformAttribute<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal<'a> {
    pub number: u8,
    pub protocol_id: u8,
    pub spi: Bytes<'a>,
    pub transforms: Vec<Transform<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficSelector<'a> {
    /// 7 (IPv4 range, 4-byte addresses) or 8 (IPv6 range, 16-byte addresses).
    pub ts_type: u8,
    pub ip_protocol: u8,
    pub start_port: u16,
    pub end_port: u16,
    pub start_addr: Bytes<'a>,
    pub end_addr: Bytes<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigAttribute<'a> {
    /// Attribute type without the reserved top bit.
    pub ty: u16,
    pub value: Bytes<'a>,
}

/// A payload body by type (RFC 7296 §3.3-§3.16, RFC 7383 §2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<'a> {
    Sa(Vec<Proposal<'a>>),
    Ke {
        group: u16,
        data: Bytes<'a>,
    },
    IdI {
        id_type: u8,
        data: Bytes<'a>,
    },
    IdR {
        id_type: u8,
        data: Bytes<'a>,
    },
    Cert {
        encoding: u8,
        data: Bytes<'a>,
    },
    CertReq {
        encoding: u8,
        data: Bytes<'a>,
    },
    Auth {
        method: u8,
        data: Bytes<'a>,
    },
    Nonce(Bytes<'a>),
    Notify {
        protocol_id: u8,
        notify_type: u16,
        spi: Bytes<'a>,
        data: Bytes<'a>,
    },
    Delete {
        protocol_id: u8,
        spi_size: u8,
        spis: Vec<Bytes<'a>>,
    },
    VendorId(Bytes<'a>),
    TsI(Vec<TrafficSelector<'a>>),
    TsR(Vec<TrafficSelector<'a>>),
    /// Still sealed: IV | ciphertext | ICV; `next_payload` is the first inner type.
    Sk {
        next_payload: u8,
        data: Bytes<'a>,
    },
    Cp {
        cfg_type: u8,
        attributes: Vec<ConfigAttribute<'a>>,
    },
    Eap(Bytes<'a>),
    Skf {
        next_payload: u8,
        fragment_number: u16,
        total_fragments: u16,
        data: Bytes<'a>,
    },
    Unknown {
        ty: u8,
        data: Bytes<'a>,
    },
}

pub const SA: u8 = 33;
pub const KE: u8 = 34;
pub const IDI: u8 = 35;
pub const IDR: u8 = 36;
pub const CERT: u8 = 37;
pub const CERTREQ: u8 = 38;
pub const AUTH: u8 = 39;
pub const NONCE: u8 = 40;
pub const NOTIFY: u8 = 41;
pub const DELETE: u8 = 42;
pub const VENDOR_ID: u8 = 43;
pub const TSI: u8 = 44;
pub const TSR: u8 = 45;
pub const SK: u8 = 46;
pub const CP: u8 = 47;
pub const EAP: u8 = 48;
pub const SKF: u8 = 53;

/// Whether this codec has a typed decoder for payload type `ty`.
pub fn is_known_type(ty: u8) -> bool {
    matches!(ty, SA..=EAP | SKF)
}

impl Body<'_> {
    pub fn payload_type(&self) -> u8 {
        match self {
            Body::Sa(_) => SA,
            Body::Ke { .. } => KE,
            Body::IdI { .. } => IDI,
            Body::IdR { .. } => IDR,
            Body::Cert { .. } => CERT,
            Body::CertReq { .. } => CERTREQ,
            Body::Auth { .. } => AUTH,
            Body::Nonce(_) => NONCE,
            Body::Notify { .. } => NOTIFY,
            Body::Delete { .. } => DELETE,
            Body::VendorId(_) => VENDOR_ID,
            Body::TsI(_) => TSI,
            Body::TsR(_) => TSR,
            Body::Sk { .. } => SK,
            Body::Cp { .. } => CP,
            Body::Eap(_) => EAP,
            Body::Skf { .. } => SKF,
            Body::Unknown { ty, .. } => *ty,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload<'a> {
    pub critical: bool,
    pub body: Body<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub spi_i: [u8; 8],
    pub spi_r: [u8; 8],
    pub exchange: u8,
    pub flags: u8,
    pub message_id: u32,
    pub major_version: u8,
    pub minor_version: u8,
    pub payloads: Vec<Payload<'a>>,
}
