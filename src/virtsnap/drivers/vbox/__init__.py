"""The VirtualBox driver behind vbox:///session: VBoxManage driven with argument lists.

`driver` maps libvirt's calls, `runner` executes VBoxManage, `parse` reads what it prints.
"""
