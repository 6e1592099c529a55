# The metadata is in pyproject.toml. This file only marks the wheel as
# platform-specific (it carries libdatafeed_c.so and the producer binary)
# while keeping it independent of the Python version: the library is loaded
# with ctypes, so one wheel serves every CPython >= 3.8 (tag py3-none-<plat>).
from setuptools import setup
from setuptools.dist import Distribution

try:
    from wheel.bdist_wheel import bdist_wheel as _bdist_wheel
except ImportError:  # building without the wheel package: plain install
    _bdist_wheel = None


class _BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


cmdclass = {}
if _bdist_wheel is not None:

    class _PlatformWheel(_bdist_wheel):
        def get_tag(self):
            _, _, plat = super().get_tag()
            return "py3", "none", plat

    cmdclass["bdist_wheel"] = _PlatformWheel

setup(distclass=_BinaryDistribution, cmdclass=cmdclass)
