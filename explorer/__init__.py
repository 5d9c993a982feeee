"""The Streamlit explorer: pages over the tinytl library (no memory logic lives here)."""
