//! Host side of the action link: serial transport, safety governor, controller simulator.
