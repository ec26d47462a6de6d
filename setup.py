"""Maps the top-level workloads/ and submissions/ folders into the algoperf package.

Installed, they are ``algoperf.workloads`` and ``algoperf.submissions``: no generically
named top-level module lands in site-packages. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

FOLDERS = {"algoperf": "algoperf", "algoperf.workloads": "workloads", "algoperf.submissions": "submissions"}

packages = []
for package, folder in FOLDERS.items():
    packages.append(package)
    packages += [f"{package}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=FOLDERS)
