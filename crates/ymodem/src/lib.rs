//! Sans-IO YMODEM sender and receiver state machines.
