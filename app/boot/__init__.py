"""Boot files: initrds, UKI build/inspect, shim fallback CSV, PCR prediction. Qt-free."""
