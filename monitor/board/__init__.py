"""The clinic board: every chair live on one screen, through an MQTT broker (Mosquitto).

Qt-free. :mod:`.messages` holds the versioned JSON messages shared by chair and board and the
topic names; :mod:`.publisher` is the chair side (a pipeline listener with its own thread and
paho-mqtt client); :mod:`.subscriber` the board's client; :mod:`.model` the board's rules
(staleness, offline chairs, which priority sounds), with time passed in; :mod:`.snapshot` turns a
session into what the board shows. See docs/clinic-board.md.
"""
