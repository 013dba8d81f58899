//! ESP (RFC 4303) in tunnel mode for the userspace data plane: the per-packet transform,
//! the anti-replay window, traffic selectors, the CHILD SA with its counters and limits,
//! and the SA table. Plain Rust: no sockets, no TUN, no Python (`crate::dataplane` moves the
//! packets, `crate::python` exposes this to Python).

mod child;
mod replay;
mod selector;
mod table;
mod transform;

pub use child::{ChildConfig, ChildSa, CounterValues, Counters, Drop, Event, Limits};
pub use replay::{Replay, ReplayWindow};
pub use selector::{Flow, Selector, Selectors};
pub use table::{InstallError, SaTable, TableCounters};
pub use transform::{
    header, EspTransform, Opened, HEADER_LEN, NEXT_HEADER_DUMMY, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6,
};

#[cfg(test)]
mod tests;
