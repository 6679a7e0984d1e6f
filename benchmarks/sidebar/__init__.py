"""The sidebar benchmarks behind ``benchmarks/run.py``: set-up (``common``), the servers and
what is measured of them (``servers``), the loopback suite (``loopback``), the realistic
scenario behind a network (``realistic``), and three programs run as their own processes: the
closed-loop load generator (``loadgen``), the open-loop one (``openloop``) and the slow network
(``network``)."""
