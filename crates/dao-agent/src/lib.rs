//! `dao agent`: the node agent. Today it plays simulated nodes (`--simulate N`): thousands of
//! nodes per process that register, renew their leases and play their pods' lifecycle without
//! running containers, so orchestration can be tested and measured at scale on one machine.

pub mod ipam;
pub mod simulated;
