//! placeholder
pub struct Cluster; pub struct ClusterStatus; pub struct MemberStatus; pub enum Role {}
