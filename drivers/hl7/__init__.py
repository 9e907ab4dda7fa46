"""HL7 v2 over MLLP: ORU^R01 observation messages as bedside monitors and their gateways send them.

Modules: :mod:`~drivers.hl7.mllp` (MLLP framing), :mod:`~drivers.hl7.message` (HL7 v2 parsing,
timestamps, acknowledgements), :mod:`~drivers.hl7.codes` (OBX codes and units → Vigil's vitals and
waveforms, including the clinic's table of vendor-local codes), :mod:`~drivers.hl7.host`
(:class:`~drivers.hl7.host.Hl7Decoder`, Vigil's side, and the patient/bed gate),
:mod:`~drivers.hl7.device` (:class:`~drivers.hl7.device.Hl7Emulator`, the monitor's side) and
:mod:`~drivers.hl7.link` (the MLLP server and client links). Imported lazily by the registry.
"""
