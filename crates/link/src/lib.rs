//! The wire protocol shared by the host (`spatialbot-edge`) and arm-controller firmware.
#![no_std]
