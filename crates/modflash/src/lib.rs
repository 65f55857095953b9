//! Orchestration: device references, transports, inventory, catalogue, planner and executor.
