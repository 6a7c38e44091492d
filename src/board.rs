//! Board profiles (`boards/*.toml`): backend order, camera modes, link, safety limits, budgets.
