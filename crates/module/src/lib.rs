//! Particle-style firmware module format.
#![no_std]
