"""TinyTL explorer: `streamlit run app.py`. Builds the navigation; each page is a file in explorer/pages/."""

import streamlit as st

from explorer.navigation import PAGES

st.set_page_config(page_title="TinyTL explorer", page_icon=":material/memory:", layout="wide")
pages = [st.Page(p.path, title=p.title, icon=p.icon, default=i == 0) for i, p in enumerate(PAGES)]
st.navigation(pages).run()
