//! Dataset readers, transforms and the synthetic world.
