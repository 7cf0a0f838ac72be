// System is the Swift face of the system layer; CSystem's calls and
// constants (the GNU-only ones) come with it.
@_exported import CSystem
