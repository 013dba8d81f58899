//! The userspace ESP data plane on Linux: a TUN device and the NAT-T UDP socket, moved by two
//! threads through `crate::esp`'s SA table. For kernels without ESP (no XFRM transform), the
//! way strongSwan's kernel-libipsec works; the control plane drives it through the SA table.

mod offload;
mod plane;
mod tun;

pub use plane::{Plane, PlaneCounters, BATCH};
pub use tun::Tun;
