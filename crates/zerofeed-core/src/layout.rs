//! Layout. (Being written.)
