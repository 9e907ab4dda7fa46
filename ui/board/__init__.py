"""The clinic board window (``vigil board``) and the chair's link to it. The rules are in
:mod:`monitor.board`; these modules only draw and forward."""
