//! authmux-core
