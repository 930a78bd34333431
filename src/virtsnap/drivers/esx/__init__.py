"""The ESX / vCenter driver (esx://, vpx://): VMware's own snapshot tree mapped onto libvirt's API.

auth.py finds credentials, session.py talks vSphere (TLS, login, faults, tasks, the property collector),
tree.py maps vSphere's snapshot tree, driver.py is the Driver. pyvmomi is imported only on open.
"""
