//! Networking: the primitives every network is built from, and docker-like networks for
//! `ctl run`.
//!
//! - [`link`]: links, addresses and routes through rtnetlink, in the host's or a named network
//!   namespace; sysctl helpers.
//! - [`ipam`]: a file-backed allocator of addresses from one subnet.
//! - [`nft`]: nftables tables replaced atomically through `nft -f -`.
//! - [`docker`]: `ctl network create|ls|rm|inspect`, the default `bridge` network, connecting
//!   containers (veth, address, route, hosts files) and publishing their ports.
//! - [`ports`]: `-p` parsing, host port assignment and docker's PORTS text.
//! - [`hosts`]: the /etc/hosts and /etc/resolv.conf of containers on bridge networks.

pub mod docker;
pub mod hosts;
pub mod ipam;
pub mod link;
pub mod nft;
pub mod ports;
