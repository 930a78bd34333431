"""The libvirt+<URI> driver: virtsnap's API over a libvirtd connection (libvirt-python).

Optional: it needs libvirt-python (`pip install 'virtsnap[libvirt]'`), imported only when such a URI is opened.
"""
